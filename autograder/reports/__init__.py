"""What grading produces for people: the grade sheet, Gradescope results, feedback, the TA summary."""
