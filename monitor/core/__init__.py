"""The vocabulary every stage shares: records, errors, text sanitising, endpoint categories. Imports nothing of ours."""
