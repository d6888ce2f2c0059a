"""The attacks' progress reports (attacks/progress.py): when the student is scored and what each report says."""

from __future__ import annotations

from divqat_tvm.attacks.progress import report_step


class _Scorer:
    """An evaluator that counts how often it scores the student."""

    def __init__(self) -> None:
        self.calls = 0

    def accuracy(self, student: object) -> float:
        assert student == "student"
        self.calls += 1
        return 0.5


def test_report_step_scores_every_nth_step_and_the_last() -> None:
    reports: list[tuple] = []
    scorer = _Scorer()
    for done in range(1, 8):
        report_step(
            lambda q, loss, accuracy, phase: reports.append((q, loss, accuracy, phase)),
            100 + done,
            0.25,
            done,
            7,
            "iter",
            3,
            scorer,
            "student",
        )
    assert [r[2] is not None for r in reports] == [False, False, True, False, False, True, True]
    assert scorer.calls == 3
    assert reports[0] == (101, 0.25, None, "iter 1/7") and reports[-1] == (107, 0.25, 0.5, "iter 7/7")


def test_report_step_without_an_evaluator_never_scores() -> None:
    reports: list[tuple] = []
    for done in (1, 2):
        report_step(lambda q, loss, accuracy, phase: reports.append(accuracy), 0, 1.0, done, 2, "replay", 2)
    assert reports == [None, None]
