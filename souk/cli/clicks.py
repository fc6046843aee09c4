"""`souk clicks learn`: learn the index's click model from an impression/click log (continues from its state)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from souk.cli.options import JsonOpt, command_group
from souk.cli.output import console, emit_json

clicks_app, register = command_group("clicks", "Learn from impression and click logs (online, position-corrected).")


@clicks_app.command("learn")
def learn_command(
    index: Annotated[Path, typer.Option("--index", help="Index directory (its models/ gets the click model).")],
    log: Annotated[Optional[Path], typer.Option(
        "--log", help="JSONL impressions: request, query, shown (in order), clicked, purchased, ts.")] = None,
    events: Annotated[bool, typer.Option(
        "--events", help="Learn from the index's own event log instead (the searches not learned yet).")] = False,
    eta: Annotated[Optional[float], typer.Option(
        "--eta", help="Position bias: examination of rank r is r^-eta (default 1; 0 = no correction). "
        "Fixed at creation.")] = None,
    floor: Annotated[Optional[float], typer.Option(
        "--floor", help="Lowest examination probability (clips the weights; default 0.1).")] = None,
    alpha: Annotated[Optional[float], typer.Option(
        "--alpha", help="FTRL learning rate (default 0.1). Fixed at creation.")] = None,
    l1: Annotated[Optional[float], typer.Option("--l1", help="FTRL L1 (default 0.5). Fixed at creation.")] = None,
    l2: Annotated[Optional[float], typer.Option("--l2", help="FTRL L2 (default 1). Fixed at creation.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Update the click model with a new log and publish it as the active `clicks` model."""
    from souk.errors import ConfigError
    from souk.training.online import learn_log

    if (log is None) == (not events):
        raise ConfigError("souk clicks learn: give --log FILE or --events (one of them)")
    if events:
        from souk.cli.events import events_as_impression_log

        with events_as_impression_log(index) as log:
            result = learn_log(index, log, eta, floor, {"alpha": alpha, "l1": l1, "l2": l2})
    else:
        assert log is not None  # one of --log and --events, checked above
        result = learn_log(index, log, eta, floor, {"alpha": alpha, "l1": l1, "l2": l2})
    if as_json:
        emit_json(result)
        return
    start = f"continued from {result['continued_from']}" if result["continued_from"] else "new model"
    console.print(f"{result['model']} ({start}): {result['impressions']} impressions, {result['clicks']} clicks, "
                  f"{result['unknown']} unknown ids skipped, log loss {result['logloss']:.4f}, "
                  f"{result['total_impressions']} impressions learned in all")
