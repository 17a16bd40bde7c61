"""Reports for people: the weekly summary and the exposure audit."""
