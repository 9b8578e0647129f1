"""The command line: ``pagent-run PLAN`` and the ``pagent`` group. click only; no logic here.

Every error the core raises on purpose becomes one line on stderr and its documented exit code
(README, "Exit codes"); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import gc
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from supervisor import __version__
from supervisor.errors import EXIT_FAILED, EXIT_SIGINT, EXIT_USAGE, PagentError, UsageError
from supervisor.plan.model import Plan, PlanFile
from supervisor.ui.compose import load_plan

if TYPE_CHECKING:
    from supervisor.state.store import Store

_SWITCH_INTERVAL = 0.0005  # seconds a thread may hold the GIL while another waits for it (run)

# Every other module is imported inside the command that needs it: a command starts in about a
# third of the time it took with everything imported up front (``pagent validate`` needs neither
# anyio, structlog nor rich), which counts for scripts and for the 10,000-task targets.

F = TypeVar("F", bound=Callable[..., Any])

# True once a console-script entry runs: the process is pagent's own (not a test's, nor a
# program's that calls the commands), so a run may freeze the collector's view of it (``_run``).
_process = [False]

PLAN_ARG = click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False, path_type=Path))
RUN_OPT = click.option("--run", "run_id", metavar="ID", help="An earlier run (default: the latest).")


def _fail(message: str, code: int) -> None:
    from supervisor.plan.names import printable

    for line in message.splitlines() or [""]:
        click.echo(f"pagent: {printable(line)}", err=True)
    sys.exit(code)


def handle_errors(func: F) -> F:
    """Render ``PagentError`` as one line with its exit code; Ctrl-C outside a run exits 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug") or kwargs.get("debug")
        try:
            return func(*args, **kwargs)
        except PagentError as exc:
            if debug:
                raise
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", EXIT_SIGINT)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # a bug: still one line, unless --debug
            if debug:
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (--debug shows the traceback)", EXIT_FAILED)
        return None

    return wrapper  # type: ignore[return-value]


def _locate(plan_path: Path) -> PlanFile:
    """The plan file's location, for read-only commands: they do not need a valid plan."""
    path = plan_path.absolute()
    if not path.is_file():
        raise UsageError(f"{path.name}: no such plan file: {path}")
    return PlanFile(path)


def _store(plan: PlanFile) -> Store:
    """The plan's state database, opened read-only (so that it works on a read-only plan
    directory too); ``UsageError`` if the plan never ran."""
    from supervisor.state.layout import Layout
    from supervisor.state.store import Store

    path = Layout.of(plan).database
    if not path.exists():
        raise UsageError(f"{plan.path.name}: no run yet")
    return Store(path, read_only=True)


def _view(plan: PlanFile, run_id: str | None) -> dict[str, Any]:
    """The view of the plan's latest (or given) run, as ``status`` and ``report`` show it."""
    from supervisor.state.layout import Layout
    from supervisor.state.lock import is_locked
    from supervisor.state.views import find_run, run_view

    store = _store(plan)
    try:
        view = run_view(store, find_run(plan, store, run_id))
    finally:
        store.close()
    if view["status"] == "running" and is_locked(Layout.of(plan).lock_file) is None:
        # Recorded as running, but no process holds the plan: its supervisor died.
        view["status"] = "abandoned"
        view["note"] = "its supervisor is gone; the next pagent-run of this plan repairs the record"
    return view


def _run_options(func: F) -> F:
    options = [
        click.option(
            "--retry-failed", is_flag=True, help="Rerun the tasks of the latest run that did not succeed."
        ),
        RUN_OPT,
        click.option("--dry-run", is_flag=True, help="Print the waves and tasks; create and run nothing."),
        click.option("--quiet", "-q", is_flag=True, help="Print only the final summary."),
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            default="text",
            show_default=True,
            help="Event lines as readable text or JSON lines.",
        ),
        click.option("--debug", is_flag=True, help="Show tracebacks."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@handle_errors
def _run(
    *,
    plan_path: Path,
    retry_failed: bool,
    run_id: str | None,
    dry_run: bool,
    quiet: bool,
    log_format: str,
    debug: bool,
) -> None:
    plan = load_plan(plan_path)
    if run_id is not None and not retry_failed:
        raise UsageError("--run goes with --retry-failed (to run a plan anew, leave --run out)")
    if dry_run:
        from supervisor.plan.names import printable
        from supervisor.ui.describe import describe_plan

        click.echo("\n".join(printable(line) for line in describe_plan(plan).splitlines()))
        return
    import anyio

    from supervisor.engine.invocation import execute_plan
    from supervisor.state.layout import Layout
    from supervisor.ui.compose import KINDS, executor_for
    from supervisor.ui.console import EventPrinter, configure_logging
    from supervisor.ui.report import write_report
    from supervisor.ui.tables import format_summary

    if not quiet:  # a quiet run prints no event line: it never needs structlog
        configure_logging(log_format)
    # The loop's thread waits for the GIL after each system call it makes while the spawner's,
    # the files' and SQLite's work runs on other threads: a waiting thread forces a switch only
    # after this interval (5 ms by default, longer than a whole attempt of a quick agent).
    sys.setswitchinterval(_SWITCH_INTERVAL)
    printer = EventPrinter(quiet)
    executor = executor_for(plan)
    if _process[0]:
        # What is loaded by now (modules, the plan) lives as long as the process: frozen, it is
        # out of the cyclic collector's way, whose full collections would walk it again and
        # again, and again while the interpreter exits (50 ms of a one-task run's 350).
        gc.freeze()
        gc.enable()  # main_run kept it off while loading: 61 collections that freed 508 objects
    run = functools.partial(
        execute_plan,
        plan,
        executor=executor,
        kinds=KINDS,
        retry_failed=retry_failed,
        run_id=run_id,
        report=write_report,  # written by the run, so that its notification can name the file
    )
    if not quiet and log_format == "text" and sys.stderr.isatty():
        from supervisor.ui import progress  # rich's live view: only for a person watching

        view = progress.ProgressView()
        with progress.live(view):
            result = anyio.run(functools.partial(run, emit=progress.tee(view, printer)))
    else:
        result = anyio.run(functools.partial(run, emit=printer))
    layout = Layout.of(plan)
    click.echo(format_summary(result.view, str(layout.run_dir(result.run_id))))
    sys.exit(result.exit_code)


@click.command(name="pagent-run", context_settings={"help_option_names": ["-h", "--help"]})
@PLAN_ARG
@_run_options
@click.version_option(__version__, prog_name="pagent-run")
def pagent_run(**kwargs: Any) -> None:
    """Run the wave plan PLAN: every task in its own git worktree, supervised to the end."""
    _run(**kwargs)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pagent")
def pagent() -> None:
    """pagent-run: unattended batch runs of coding agents."""


@pagent.command(name="run")
@PLAN_ARG
@_run_options
def run_cmd(**kwargs: Any) -> None:
    """Run the wave plan PLAN (the same as ``pagent-run PLAN``)."""
    _run(**kwargs)


@pagent.command()
@PLAN_ARG
@handle_errors
def validate(plan_path: Path) -> None:
    """Check PLAN; exit 0 if it is valid, 2 with one line naming the problem if not."""
    from supervisor.plan.across import check_memory, check_sandbox, wants_sandbox
    from supervisor.ui.compose import executor_for

    plan = load_plan(plan_path)
    # Where attempts run decides what memory they can ever have and whether they can be
    # confined (pagent-run checks both too).
    executor = executor_for(plan)
    check_memory(plan, executor.capacity_limit())
    problem = executor.confinement_problem() if wants_sandbox(plan) else None
    if fallback := check_sandbox(plan, problem):
        click.echo(
            f"pagent: warning: {plan.path.name}: no sandbox here ({problem}): "
            f"sandbox = 'auto' tasks will run unconfined: {', '.join(fallback)}",
            err=True,
        )
    if (warning := _publish_warning(plan)) is not None:
        click.echo(f"pagent: warning: {plan.path.name}: {warning}", err=True)
    click.echo(f"{plan.path.name}: ok ({len(plan.tasks)} tasks in {len(plan.waves)} waves)")


def _publish_warning(plan: Plan) -> str | None:
    """Why ``[publish] remote`` will not work (a run then refuses to start), or ``None``."""
    if plan.publish.remote is None:
        return None
    from supervisor.errors import PlanError
    from supervisor.workspace.git import remote_problem, resolve_repo

    try:
        repo = resolve_repo(plan)
    except PlanError as exc:
        return f"cannot check publish.remote: {str(exc).removeprefix(plan.path.name + ': ')}"
    problem = remote_problem(repo.root, plan.publish.remote)
    return None if problem is None else f"publish.remote: {problem} (pagent-run refuses to start)"


@pagent.command()
@PLAN_ARG
@RUN_OPT
@click.option("--json", "as_json", is_flag=True, help="Print the run as one JSON object.")
@handle_errors
def status(plan_path: Path, run_id: str | None, as_json: bool) -> None:
    """Show the latest (or given) run of PLAN: every task's state, attempts and live figures."""
    from supervisor.state.views import indented_json
    from supervisor.ui.tables import format_status

    view = _view(_locate(plan_path), run_id)
    click.echo(indented_json(view) if as_json else format_status(view))


@pagent.command()
@PLAN_ARG
@click.argument("task_id", metavar="TASK")
@click.option("--attempt", type=click.IntRange(min=1), help="Attempt number (default: the latest).")
@RUN_OPT
@handle_errors
def logs(plan_path: Path, task_id: str, attempt: int | None, run_id: str | None) -> None:
    """Print the raw log (stdout and stderr, as written) of TASK's latest or given attempt."""
    from supervisor.state.views import find_run

    plan = _locate(plan_path)
    store = _store(plan)
    try:
        run = find_run(plan, store, run_id)
        attempts = store.attempts(run.run_id, task_id)
    finally:
        store.close()
    if not attempts:
        raise UsageError(f"{plan.path.name}: task {task_id!r} has no attempt in run {run.run_id}")
    chosen = attempts[-1] if attempt is None else next((a for a in attempts if a.number == attempt), None)
    if chosen is None:
        numbers = ", ".join(str(a.number) for a in attempts)
        raise UsageError(f"{plan.path.name}: task {task_id!r} has no attempt {attempt} (attempts: {numbers})")
    try:
        with open(chosen.log_path, "rb") as log:
            while chunk := log.read(1 << 20):
                sys.stdout.buffer.write(chunk)
    except FileNotFoundError:
        raise UsageError(f"log of attempt {chosen.number} is gone: {chosen.log_path}") from None
    sys.stdout.buffer.flush()


@pagent.command()
@PLAN_ARG
@click.option("--json", "as_json", is_flag=True, help="Print the runs as a JSON list.")
@handle_errors
def runs(plan_path: Path, as_json: bool) -> None:
    """List the runs of PLAN: id, start, duration, status, tasks by state, cost."""
    from supervisor.state import history
    from supervisor.state.views import indented_json
    from supervisor.ui.tables import format_runs

    plan = _locate(plan_path)
    store = _store(plan)
    try:
        rows = history.list_runs(plan, store)
    finally:
        store.close()
    click.echo(indented_json(rows) if as_json else format_runs(rows))


@pagent.command()
@PLAN_ARG
@RUN_OPT
@click.option("--force", is_flag=True, help="Also remove worktrees with uncommitted changes (they are lost).")
@handle_errors
def clean(plan_path: Path, run_id: str | None, force: bool) -> None:
    """Remove PLAN's worktrees (every run's, or one run's); keep every branch.

    Refuses, removing nothing, while a worktree holds uncommitted or untracked changes (unless
    --force) and while a run of the plan is active. Each task's teardown hooks run first.
    """
    from supervisor.engine.cleanup import clean as clean_worktrees
    from supervisor.plan.names import printable
    from supervisor.ui.compose import KINDS, executor_for

    plan = load_plan(plan_path)
    cleaned = clean_worktrees(plan, run_id, force, executor_for(plan), KINDS)  # for teardown hooks
    for warning in cleaned.warnings:
        click.echo(f"pagent: warning: {printable(warning)}", err=True)
    click.echo(f"removed {len(cleaned.removed)} worktree(s); branches kept: {len(cleaned.branches)}")
    for branch in cleaned.branches:
        click.echo(f"  {branch}")


@pagent.command()
@PLAN_ARG
@click.argument("task_id", metavar="TASK")
@click.argument("text", metavar="TEXT", required=False)
@click.option(
    "--file", "file_", type=click.Path(dir_okay=False, path_type=Path), help="Read the answer from a file."
)
@RUN_OPT
@handle_errors
def answer(plan_path: Path, task_id: str, text: str | None, file_: Path | None, run_id: str | None) -> None:
    """Answer TASK of PLAN's latest (or given) run, which needs input: the next
    ``pagent-run PLAN --retry-failed`` continues its session with TEXT (or prepends it to the
    prompt). Shows what the task asked first. Refuses (exit 2) a task that does not need input,
    and (exit 75) while a run of the plan is active.
    """
    import anyio

    from supervisor.engine.byhand import answer_task
    from supervisor.plan.names import printable

    if (text is None) == (file_ is None):
        raise UsageError("give the answer as TEXT or with --file (one of them)")
    if file_ is not None:
        text = _read_answer(file_)
    assert text is not None
    plan = load_plan(plan_path)
    answered = anyio.run(answer_task, plan, task_id, text, run_id)
    if answered.asked:
        click.echo(f"{printable(task_id)} asked:")
        click.echo("\n".join(f"  {printable(line)}" for line in answered.asked))
    again = " (it replaces the earlier answer)" if answered.replaced else ""
    click.echo(
        f"answer recorded for {printable(task_id)}, attempt {answered.attempt}{again}; continue with: "
        f"pagent-run {printable(str(plan.path))} --retry-failed"
    )


def _read_answer(path: Path) -> str:
    """An answer file's text: a regular UTF-8 file of at most 1 MiB; ``UsageError`` otherwise."""
    from supervisor.plan.files import PROMPT_LIMIT, FileProblem, read_text

    try:
        return read_text(path, PROMPT_LIMIT)
    except FileProblem as exc:
        raise UsageError(f"--file {path}: it {exc}") from None
    except OSError as exc:
        raise UsageError(f"--file {path}: {exc.strerror or exc}") from None


@pagent.command()
@PLAN_ARG
@RUN_OPT
@click.option("--open", "open_", is_flag=True, help="Open the report in the default browser.")
@handle_errors
def report(plan_path: Path, run_id: str | None, open_: bool) -> None:
    """Write the run's self-contained report.html (afresh, so it is current) and print its path."""
    from supervisor.state.layout import Layout
    from supervisor.ui.report import write_report

    plan = _locate(plan_path)
    view = _view(plan, run_id)
    target = Layout.of(plan).report(view["run_id"])
    try:
        path = write_report(view, target)
    except OSError as exc:
        path = _report_elsewhere(view, target)
        click.echo(f"pagent: warning: cannot write {target}: {exc.strerror or exc}; showing {path}", err=True)
    click.echo(str(path))
    if open_:
        click.launch(str(path))


def _report_elsewhere(view: dict[str, Any], target: Path) -> Path:
    """Where the report is when the run's directory cannot be written (read-only, full): the one
    the run wrote at its end, if any, else a fresh one in a private temporary directory."""
    from supervisor.ui.report import write_report

    if target.is_file():
        return target
    try:
        return write_report(view, Path(tempfile.mkdtemp(prefix="pagent-report-")) / target.name)
    except OSError as exc:
        raise PagentError(f"cannot write {target} nor a copy elsewhere: {exc.strerror or exc}") from None


@pagent.command()
@PLAN_ARG
@RUN_OPT
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@handle_errors
def publish(plan_path: Path, run_id: str | None, debug: bool) -> None:
    """Publish PLAN's latest (or given) run per its [publish] table: push every succeeded task's
    branch (only what changed) and the integration branch, open the pull requests not yet opened.

    Exit 0 when everything is published, 1 when a push or a pull request failed. Refuses while a
    run of the plan is active.
    """
    import anyio

    from supervisor.engine.byhand import publish_run
    from supervisor.ui.handoff import publish_lines

    plan = load_plan(plan_path)
    view = anyio.run(publish_run, plan, run_id)
    lines = publish_lines(view) or ["published: nothing (no succeeded task with a branch)"]
    click.echo("\n".join(lines))
    if publish_lines(view, problems_only=True):
        sys.exit(EXIT_FAILED)


@pagent.command()
@PLAN_ARG
@RUN_OPT
@click.option("--test", "test", is_flag=True, help="Send a test message instead of the run's summary.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@handle_errors
def notify(plan_path: Path, run_id: str | None, test: bool, debug: bool) -> None:
    """Send PLAN's latest (or given) run's summary to the [notify] targets (or, with --test, a
    test message) and print one line per target.

    Exit 0 when every target got it, 1 when one did not. The run's summary is recorded on the
    run; refuses while a run of the plan is active (--test does not need a run).
    """
    import anyio

    from supervisor.engine import byhand

    plan = load_plan(plan_path)
    results = anyio.run(byhand.notify_test, plan) if test else anyio.run(byhand.notify_run, plan, run_id)
    for result in results:
        click.echo(result.line())
    if not all(result.ok for result in results):
        sys.exit(EXIT_FAILED)


def _entry(command: click.Command, name: str) -> None:
    """Run ``command``; click's own usage errors become one ``pagent:`` line and exit 2."""
    try:
        command.main(prog_name=name, standalone_mode=False)
    except click.exceptions.Abort:
        _fail("interrupted", EXIT_SIGINT)
    except click.ClickException as exc:
        _fail(exc.format_message().replace("\n", " "), exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(0)


def main() -> None:  # pragma: no cover - console-script entry
    """Entry point of ``pagent``."""
    _process[0] = True
    _entry(pagent, "pagent")


def main_run() -> None:  # pragma: no cover - console-script entry
    """Entry point of ``pagent-run``."""
    _process[0] = True
    gc.disable()  # until the run starts (``_run``): what loading makes lives on (modules, plan)
    _entry(pagent_run, "pagent-run")


__all__ = ["EXIT_USAGE", "main", "main_run", "pagent", "pagent_run"]
