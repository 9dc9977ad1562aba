"""Evaluation: task sets, the runner, scorers and judges, reports and comparisons.

`load_tasks` reads our JSONL and the benchmark files users already have; `run` (in `runner`) runs a
model on them in one or more modes; `score_answer` decides correctness; `report` and `compare` turn a
run folder into figures. Everything here is importable without torch.
"""

from .rescore import rescore
from .runner import EvalRun, read_results, run
from .scoring import Judge, Score, extract_choice, score_answer
from .tasks import Task, TaskError, TaskSet, load_tasks, write_tasks

__all__ = ["EvalRun", "Judge", "Score", "Task", "TaskError", "TaskSet", "extract_choice", "load_tasks",
           "read_results", "rescore", "run", "score_answer", "write_tasks"]
