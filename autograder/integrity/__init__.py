"""Checks that need more than a test: the trained model measured by the grader, seed
reproducibility, independence from the test split, duplicates."""
