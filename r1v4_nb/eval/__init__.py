"""Evaluation: task sets, the runner, scorers and judges, reports and comparisons.

`load_tasks` reads our JSONL and the benchmark files users already have; `run` (in `runner`) runs a
model on them in one or more modes; `score_answer` decides correctness; `report` and `compare` turn a
run folder into figures. Everything here is importable without torch.
"""

from .scoring import Judge, Score, extract_choice, score_answer
from .tasks import Task, TaskError, TaskSet, load_tasks, write_tasks

__all__ = ["Judge", "Score", "Task", "TaskError", "TaskSet", "extract_choice", "load_tasks", "score_answer",
           "write_tasks"]
