"""Grading submissions and what a grade is made of."""
