"""A grade as plain data: per-question points, so it can cross process and machine boundaries."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class QuestionScore:
    name: str
    score: float
    max_score: float


@dataclass
class GradeResult:
    assignment: str
    submission: str
    questions: list[QuestionScore] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return sum(q.score for q in self.questions)

    @property
    def possible(self) -> float:
        return sum(q.max_score for q in self.questions)

    def score_of(self, question: str) -> float:
        return self._question(question).score

    def possible_of(self, question: str) -> float:
        return self._question(question).max_score

    def _question(self, name: str) -> QuestionScore:
        for question in self.questions:
            if question.name == name:
                return question
        raise KeyError(f"{self.submission}: no question {name!r} in the grade")

    def to_dict(self) -> dict:
        return asdict(self) | {"total": self.total, "possible": self.possible}
