"""The agent loop: model -> dialect -> tools -> observations -> trajectory, as a stream of events.

It knows nothing of Jupyter. `Agent.run` is a generator of typed events
(`r1v4_nb.events`); subscribers (the CLI printer, the widgets) get the same
events. Every step is appended to the trajectory file as soon as it is done.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .dialects import Dialect, get_dialect
from .dialects.context import Context
from .errors import R1V4Error, UsageError
from .events import (
    Answered,
    Event,
    EventBus,
    NoteAdded,
    RunError,
    RunFinished,
    RunStarted,
    SegmentClosed,
    TokenDelta,
    ToolFinished,
    ToolStarted,
    TurnFinished,
    TurnStarted,
    events_of_step,
)
from .images import Image, Provenance
from .messages import Message
from .models.base import GenerationSettings, Model
from .modes import DEFAULT_DIALECT, get_mode
from .records import ModelStep, NoteStep, Observation, Step, ToolCall, ToolStep
from .tools.base import Tool, ToolContext, ToolError
from .trajectory import End, Header, Trajectory, TrajectoryWriter, fork, input_image, read, run_file, run_name

FINAL_NOTICE = ("The {what} budget of this run is used up. Do not call any more tools: give your final "
                "answer now, inside <answer></answer>.")
MAX_CONTINUATIONS = 4  # times a turn may go on after a stop string that turned out to be inside a segment


@dataclass
class Budgets:
    """Limits of one run. When one runs out, the model is asked once for its final answer."""

    max_steps: int = 12  # model turns
    max_tool_calls: int = 10
    max_tokens_per_turn: int = 2048
    max_total_tokens: int = 20480
    max_wall_s: float = 600.0

    def check(self) -> None:
        """A budget that can never be met (0 steps, a negative or NaN limit) is a user's mistake."""
        for name, low in (("max_steps", 1), ("max_tool_calls", 0), ("max_tokens_per_turn", 1),
                          ("max_total_tokens", 1), ("max_wall_s", 0)):
            value = getattr(self, name)
            if not (value >= low):  # `not >=` also catches NaN
                raise UsageError(f"budget {name} must be at least {low}, got {value}")


@dataclass
class RunResult:
    trajectory: Trajectory
    path: Path
    answer: str | None
    reason: str


@dataclass
class _RunState:
    header: Header
    writer: TrajectoryWriter
    steps: list[Step]
    ctx: ToolContext
    cancel: threading.Event
    start: float = field(default_factory=time.monotonic)
    usage: dict[str, int] = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})
    tool_calls: int = 0
    context: Context | None = None  # the model's context after the first `in_context` steps
    in_context: int = 0
    turns: int = 0  # model steps among the first `counted` steps
    counted: int = 0


class Agent:
    """Runs a model with tools in a dialect until it answers, a budget runs out, or it is stopped."""

    def __init__(
        self,
        model: Model,
        tools: Sequence[Tool] | None = None,
        dialect: str | Dialect | None = None,
        mode: str = "general",
        budgets: Budgets | None = None,
        settings: GenerationSettings | None = None,
        system_prompt: str | None = None,
        runs_dir: str | Path = "runs",
    ):
        spec = get_mode(mode)
        if dialect is None or dialect == DEFAULT_DIALECT:  # the default stands for the mode's own dialect
            dialect = spec.dialect
        self.model = model
        self.mode = mode
        self.dialect = get_dialect(dialect)
        if tools is None:
            from .tools.registry import default_tools

            tools = default_tools(mode)
        self.tools: dict[str, Tool] = {t.name: t for t in tools}
        self.budgets = budgets or Budgets()
        self.budgets.check()
        self.settings = settings or GenerationSettings()
        self.system_prompt = system_prompt
        self.runs_dir = Path(runs_dir)
        self._bus = EventBus()
        self._cancel = threading.Event()

    @classmethod
    def from_header(cls, header: Header, model: Model, tools: Sequence[Tool], **kw: Any) -> Agent:
        """An agent set up as a recorded run was: its dialect, mode and system prompt, with `model` and `tools`."""
        return cls(model, tools=tools, dialect=header.dialect, mode=header.mode, system_prompt=header.system_prompt,
                   **kw)

    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        """Call `fn(event)` for every event of every run; returns a function that unsubscribes."""
        return self._bus.subscribe(fn)

    def stop(self) -> None:
        """Cancel the run in progress (safe from another thread); it ends with reason `cancelled`."""
        self._cancel.set()

    # -- starting runs -------------------------------------------------------------------------

    def run(self, question: str, images: Sequence[str | Path | Image | Any] = (), out: str | Path | None = None,
            meta: dict[str, Any] | None = None) -> Iterator[Event]:
        """Run the agent on a question and images, yielding events; the trajectory goes to `out`."""
        if not isinstance(question, str) or not question.strip():
            raise UsageError("the question is empty; write the question to ask about the image(s)")
        self.budgets.check()  # again: the budgets may have been changed since __init__
        header = Header(
            question=question.strip(),
            images=[_as_image(im, n) for n, im in enumerate(images, start=1)],
            model=self.model.describe(),
            dialect=self.dialect.name,
            mode=self.mode,
            system_prompt="" if self._hosted else self.system_prompt or self._model_prompt() or
            self.dialect.system_prompt(self.mode, [t.spec() for t in self.tools.values()]),
            tools=[] if self._hosted else [{"name": t.name, "settings": t.settings()} for t in self.tools.values()],
            settings={"generation": self.settings.to_json(), "budgets": asdict(self.budgets)},
            meta=dict(meta or {}),
        )
        writer = TrajectoryWriter(self._out_path(out, header.id), header)
        return self._events(header, writer, [])

    def fork(self, trajectory: Trajectory | str | Path, step: int, replacement: Sequence[Step] = (),
             out: str | Path | None = None) -> Iterator[Event]:
        """Branch a recorded run at `step` (keeping the steps before it, then `replacement`) and go on live.

        The events begin with those of the kept steps, right after `RunStarted`, so every view of the
        branch (widget, printer) draws all of it.
        """
        source = trajectory if isinstance(trajectory, Trajectory) else read(trajectory)
        if source.header.dialect != self.dialect.name:
            raise UsageError(f"the trajectory was written in dialect {source.header.dialect!r} but this agent "
                             f"speaks {self.dialect.name!r}; make an Agent with dialect={source.header.dialect!r}")
        default = (run_file(source.path.parent, f"{run_name(source.path)}.fork{step}-{int(time.time())}")
                   if source.path else None)
        target = self._out_path(out or default, source.header.id + f"-fork{step}")
        writer, steps = fork(source, step, target, replacement)
        writer.header.model = self.model.describe()
        return self._events(writer.header, writer, steps)

    def ask(self, question: str, images: Sequence[str | Path | Image | Any] = (), out: str | Path | None = None,
            meta: dict[str, Any] | None = None) -> RunResult:
        """Run to the end and return the result (events still reach subscribers)."""
        return self.collect(self.run(question, images, out, meta))

    @staticmethod
    def collect(events: Iterable[Event]) -> RunResult:
        """Drain a run's events and read back its trajectory."""
        finished: RunFinished | None = None
        path: Path | None = None
        for ev in events:
            if isinstance(ev, RunStarted):
                path = ev.path
            elif isinstance(ev, RunFinished):
                finished = ev
        assert path is not None and finished is not None
        traj = read(path)
        return RunResult(traj, path, finished.answer, finished.reason)

    @property
    def _hosted(self) -> bool:
        """A model that runs its tools itself (the hosted R1V4 API): one request, the transcript is the run."""
        return bool(getattr(self.model, "runs_tools", False))

    def _model_prompt(self) -> str | None:
        """The prompt a model folder ships for this mode (the one it was trained with); "direct" without tools."""
        prompts = getattr(self.model, "prompts", None) or {}
        if self.dialect.name != "r1v4" or not isinstance(prompts, dict):
            return None
        return prompts.get("direct" if not self.tools and self.dialect.answer_kind == "answer" else self.mode)

    def _out_path(self, out: str | Path | None, run_id: str) -> Path:
        return Path(out) if out is not None else run_file(self.runs_dir, run_id)

    # -- the loop ------------------------------------------------------------------------------

    def _events(self, header: Header, writer: TrajectoryWriter, steps: list[Step]) -> Iterator[Event]:
        self._cancel = threading.Event()
        workdir = Path(tempfile.mkdtemp(prefix=f"r1v4-{header.id}-"))
        ctx = ToolContext(header.id, workdir, header.question, len(steps), cancel=self._cancel)
        for n, im in enumerate(header.images, start=1):
            ctx.register_image(im, f"image_{n}", str(im.path), im.path.name, *(
                [im.provenance.name] if im.provenance.name else []))
        for s in steps:
            if isinstance(s, ToolStep):
                for im in s.observation.images:
                    ctx.register_image(im, *([im.provenance.name] if im.provenance.name else []))
        state = _RunState(header, writer, steps, ctx, self._cancel)
        loop = self._loop(state)
        try:
            for ev in loop:
                self._bus.emit(ev)
                yield ev
        finally:
            loop.close()  # a consumer that stops iterating still gets the run ended and the tools released

    def _loop(self, st: _RunState) -> Iterator[Event]:
        reason, answer, error = "no_answer", None, None
        started: list[Tool] = []
        yield RunStarted(st.header, st.writer.path)
        for kept in st.steps:  # a fork's kept steps (and its edited one): none for a new run
            yield from events_of_step(kept)
        try:
            for tool in self.tools.values():
                tool.start(st.ctx)
                started.append(tool)
            final_asked = False
            # A fork that ends on a model turn (an edited one) acts on that turn before asking for another.
            pending = st.steps[-1] if st.steps and isinstance(st.steps[-1], ModelStep) else None
            while True:
                if pending is not None:
                    step, pending = pending, None
                else:
                    if not final_asked:
                        why = self._exhausted(st)
                        if why:
                            note = NoteStep(len(st.steps), FINAL_NOTICE.format(what=why),
                                            reason=f"budget:{why}")
                            st.steps.append(st.writer.write(note))
                            yield NoteAdded(note)
                            final_asked = True
                    step = yield from self._turn(st, final_asked)
                if st.cancel.is_set() or step.finish_reason == "cancelled":
                    reason = "cancelled"
                    break
                answer = self._answer_of(step)
                if answer is not None:
                    reason = "answered"
                    yield Answered(step.index, answer)
                    break
                if final_asked:
                    reason = "budget"
                    break
                if self._hosted:  # the server ran the tools and stopped without an answer
                    break
                if not step.calls:
                    if step.finish_reason == "length":
                        continue  # the turn was cut by the token limit: let the model go on writing
                    break
                for call in step.calls:
                    yield from self._tool(st, call)
                    if st.cancel.is_set():
                        break
                if st.cancel.is_set():
                    reason = "cancelled"
                    break
        except KeyboardInterrupt:
            reason = "cancelled"
        except GeneratorExit:  # the consumer stopped iterating: record the run as cancelled, then close
            self._finish(st, started, "cancelled", None, None)
            raise
        except Exception as exc:  # recorded, then re-raised unless the user can act on it
            reason, error = "error", f"{type(exc).__name__}: {exc}"
            yield RunError(error, len(st.steps))
            if not isinstance(exc, R1V4Error):
                self._finish(st, started, reason, answer, error)
                yield self._finished(st, reason, answer)
                raise
        self._finish(st, started, reason, answer, error)
        yield self._finished(st, reason, answer)

    def _finished(self, st: _RunState, reason: str, answer: str | None) -> RunFinished:
        return RunFinished(reason, answer, time.monotonic() - st.start, dict(st.usage))

    def _finish(self, st: _RunState, started: list[Tool], reason: str, answer: str | None,
                error: str | None) -> None:
        if st.writer.closed:
            return
        for tool in started:
            try:
                tool.finish(st.ctx)
            except Exception:  # a tool failing to clean up must not lose the trajectory's end
                pass
        st.writer.finish(End(reason, answer, time.monotonic() - st.start, dict(st.usage), error))
        shutil.rmtree(st.ctx.workdir, ignore_errors=True)

    def _exhausted(self, st: _RunState) -> str | None:
        b = self.budgets
        st.turns += sum(isinstance(s, ModelStep) for s in st.steps[st.counted:])
        st.counted = len(st.steps)
        if st.turns >= b.max_steps:
            return "step"
        if st.tool_calls >= b.max_tool_calls:
            return "tool-call"
        if st.usage["completion_tokens"] >= b.max_total_tokens:
            return "token"
        if time.monotonic() - st.start >= b.max_wall_s:
            return "time"
        return None

    def _answer_of(self, step: ModelStep) -> str | None:
        for seg in step.segments:
            if seg.kind == self.dialect.answer_kind:
                return seg.text.strip()
        return None

    def _turn(self, st: _RunState, final: bool) -> Generator[Event, None, ModelStep]:
        index = len(st.steps)
        yield TurnStarted(index)
        parser = self.dialect.parser()
        # The final-answer turn gets a whole turn's tokens: the total budget is already spent by then.
        left = max(1, self.budgets.max_total_tokens - st.usage["completion_tokens"])
        allowed = self.budgets.max_tokens_per_turn if final else min(self.budgets.max_tokens_per_turn, left)
        settings = replace(self.settings, max_tokens=allowed)
        deadline = None if final else st.start + self.budgets.max_wall_s
        text: list[str] = []
        t0 = time.monotonic()
        ttft: float | None = None
        finish, tokens_in, tokens_out = "stop", 0, 0
        messages = self._messages(st)
        for _ in range(MAX_CONTINUATIONS + 1):
            finish = "stop"
            for delta in self.model.stream(messages, stop=list(self.dialect.stop), settings=settings,
                                           cancel=st.cancel):
                if delta.text:
                    if ttft is None and not delta.prompted:
                        ttft = time.monotonic() - t0
                    text.append(delta.text)
                    yield from self._segment_events(index, parser.feed(delta.text))
                if delta.usage is not None:
                    tokens_in = max(tokens_in, delta.usage.prompt_tokens)
                    tokens_out += delta.usage.completion_tokens
                if delta.finish_reason:
                    finish = delta.finish_reason
                if st.cancel.is_set():
                    finish = "cancelled"
                    break
                if deadline is not None and time.monotonic() > deadline:
                    finish = "length"
                    break
            if finish != "stop":
                break
            closing = parser.close_for_stop()
            if not closing:
                break
            text.append(closing)
            yield from self._segment_events(index, parser.feed(closing))
            if parser.open_kind is None:
                break
            # The stop string sat inside a segment (e.g. in a string of code): the model goes on.
            messages = self._messages(st, ModelStep(index, "".join(text)))
        yield from self._segment_events(index, parser.finish())
        raw = "".join(text)
        if tokens_out == 0 and raw:
            tokens_out = len(raw.split())  # a backend without usage: a rough count keeps budgets working
        st.usage["prompt_tokens"] += tokens_in
        st.usage["completion_tokens"] += tokens_out
        step = ModelStep(index, raw, parser.segments, tokens_in, tokens_out, time.monotonic() - t0, ttft, finish)
        if self._hosted:
            return (yield from self._transcript(st, step))
        for n, call in enumerate(step.calls):
            call.id = call.id or f"call_{index}_{n}"
        st.steps.append(st.writer.write(step))
        yield TurnFinished(step)
        return step

    def _transcript(self, st: _RunState, whole: ModelStep) -> Generator[Event, None, ModelStep]:
        """A hosted model's reply (calls, the server's observations with their images, the answer) as the
        steps it holds, through the same code as `r1v4-nb import-api`; the last model step is returned."""
        from .formats.r1v4_api import transcript_steps

        steps, warnings = transcript_steps(whole.text, st.writer.store.folder, start=len(st.steps))
        last = whole
        for n, step in enumerate(steps):
            if isinstance(step, ModelStep):
                step.finish_reason = whole.finish_reason if n == len(steps) - 1 else "stop"
                if n == 0:
                    step.tokens_in, step.ttft_s = whole.tokens_in, whole.ttft_s
                if n == len(steps) - 1:
                    step.tokens_out, step.elapsed_s = whole.tokens_out, whole.elapsed_s
            written = st.writer.write(step)
            st.steps.append(written)
            if isinstance(written, ModelStep):
                last = written
                yield TurnFinished(written)
            elif isinstance(written, ToolStep):
                st.tool_calls += 1
                yield ToolStarted(written.index, written.call)
                yield ToolFinished(written)
        for w in warnings:
            note = NoteStep(len(st.steps), f"import: {w}", reason="hosted")
            st.steps.append(st.writer.write(note))
            yield NoteAdded(note)
        return last

    def _messages(self, st: _RunState, partial: ModelStep | None = None) -> list[Message]:
        """The dialect's context after the run's steps (and a turn in progress): the run's context grows
        by the steps added since the last turn, so a turn costs its new steps, not the run's length.
        Equal to `build_messages` over the same steps (tested at every step)."""
        d, h = self.dialect, st.header
        steps = [*st.steps, partial] if partial is not None else st.steps
        if not d.incremental:
            return d.build_messages(h.system_prompt, h.question, h.images, steps)
        if st.context is None or st.in_context > len(st.steps):
            st.context, st.in_context = Context(h.system_prompt, h.question, h.images), 0
        for step in st.steps[st.in_context:]:
            d.add_step(st.context, step)
        st.in_context = len(st.steps)
        ctx = st.context.copy()
        if partial is not None:
            d.add_step(ctx, partial)
        return ctx.messages

    @staticmethod
    def _segment_events(index: int, events: list[Any]) -> Iterator[Event]:
        for ev in events:
            if ev.type == "delta" and ev.text:
                yield TokenDelta(index, ev.kind, ev.text)
            elif ev.type == "close" and ev.segment is not None:
                yield SegmentClosed(index, ev.segment)

    def _tool(self, st: _RunState, call: ToolCall) -> Iterator[Event]:
        index = len(st.steps)
        yield ToolStarted(index, call)
        st.ctx.step = index
        t0 = time.monotonic()
        if st.tool_calls >= self.budgets.max_tool_calls:
            obs = _error(f"not run: the budget of {self.budgets.max_tool_calls} tool calls is used up")
        else:
            st.tool_calls += 1
            obs = self._call(call, st.ctx)
        step = st.writer.write(ToolStep(index, call, obs, time.monotonic() - t0))
        assert isinstance(step, ToolStep)
        for im in step.observation.images:
            if im.provenance.name:
                st.ctx.images.setdefault(im.provenance.name, im)
        st.steps.append(step)
        yield ToolFinished(step)

    def _call(self, call: ToolCall, ctx: ToolContext) -> Observation:
        if call.error:
            return _error(call.error)
        tool = self.tools.get(call.name)
        if tool is None:
            names = ", ".join(self.tools) or "none in this mode"
            return _error(f"unknown tool {call.name!r}; the tools are: {names}")
        if not isinstance(call.arguments, dict):
            return _error(f"the arguments of {call.name} must be a JSON object")
        missing = [k for k in tool.parameters.get("required", []) if k not in call.arguments]
        if missing:
            return _error(f"{call.name}: missing argument(s) {', '.join(missing)}")
        try:
            return tool.run(call.arguments, ctx)
        except ToolError as exc:
            return _error(f"{call.name}: {exc}")
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a bug in a tool is an observation, not the end of the run
            return _error(f"{call.name} failed: {type(exc).__name__}: {exc}")


def _error(message: str) -> Observation:
    return Observation(text=message, error=message)


def _as_image(image: str | Path | Image | Any, n: int) -> Image:
    """An input image from a path, an Image record or a PIL image."""
    if isinstance(image, Image):
        return image
    if isinstance(image, (str, Path)):
        if str(image).startswith(("http://", "https://")):
            raise UsageError(f"image {n} is a URL ({image}); download it first and pass the file path")
        if not Path(image).is_file():
            raise UsageError(f"image {n} not found: {image} (check the path)")
        try:
            return input_image(image)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if hasattr(image, "save") and hasattr(image, "size"):  # a PIL image
        folder = Path(tempfile.mkdtemp(prefix="r1v4-input-"))
        return Image.from_pil(image, folder, Provenance("input", name=f"image_{n}.png"))
    raise UsageError(f"image {n} must be a file path or a PIL image, got {type(image).__name__}")
