"""`lintas agreement ...`: bilateral agreements, through the node's REST API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lintas.cli.client import DEFAULT_NODE, Client, NodeUrl, TokenFile, read_file
from lintas.cli.common import console, fail

app = typer.Typer(
    help="Propose, countersign, decline, suspend, resume and terminate agreements with "
         "partners (admin); list them (any user). Acts as the user whose API token is given "
         "(LINTAS_TOKEN or --token-file) on the node at --node / LINTAS_NODE_URL.",
    no_args_is_help=True)

AgreementId = Annotated[str, typer.Argument(metavar="AGREEMENT", help="The agreement's id.")]
Reason = Annotated[str, typer.Option(help="Why (sent to the partner and audited).")]


def show(a: dict[str, Any]) -> None:
    t = a["terms"]
    table = Table(show_header=False, title=f"agreement {a['id']}: {t['title']}")
    table.add_row("parties", f"{t['proposer']} (proposer), {t['counterparty']}")
    table.add_row("status", a["status"] + (f" ({a['status_reason']})" if a["status_reason"]
                                           else ""))
    table.add_row("applies today", a["state"])
    table.add_row("valid", f"{t['valid_from']} to {t['valid_until']}")
    for d in t["directions"]:
        table.add_row(f"{d['requester']} asks {d['responder']}",
                      f"purposes {', '.join(d['purposes'])}; query types "
                      f"{', '.join(d['query_types'])}; {d['response_mode']}; at most "
                      f"{d['max_candidates']} candidates; quotas {d['daily_quota']}/day, "
                      f"{d['annual_quota']}/year; disclosure "
                      f"{', '.join(d['disclosure']) or 'none'}; retention "
                      f"{d['retention_days']} days; a fingerprint hit at most "
                      f"{d.get('false_hits_per_million', 1000):,} false hits per million "
                      "searches")
    console.print(table)


@app.command("list")
def list_agreements(node: NodeUrl = DEFAULT_NODE, token_file: TokenFile = None) -> None:
    """Every agreement this node knows.

    Example: lintas agreement list
    """
    rows = Client.of(node, token_file).call("GET", "/api/v1/agreements")
    table = Table("id", "partner", "our role", "status", "applies today", "valid until",
                  title=f"{len(rows)} agreements")
    for a in rows:
        table.add_row(a["id"], a["counterpart"], a["our_role"], a["status"], a["state"],
                      a["terms"]["valid_until"])
    console.print(table)


@app.command("show")
def show_command(agreement: AgreementId, node: NodeUrl = DEFAULT_NODE,
                 token_file: TokenFile = None) -> None:
    """One agreement with its terms.

    Example: lintas agreement show AUS-IDN-2027-01
    """
    show(Client.of(node, token_file).call("GET", f"/api/v1/agreements/{agreement}"))


@app.command()
def propose(
    terms: Annotated[Path, typer.Argument(metavar="TERMS.json", exists=True, dir_okay=False,
                                          help="The terms (docs/agreements.md).")],
    node: NodeUrl = DEFAULT_NODE,
    token_file: TokenFile = None,
) -> None:
    """Sign terms as their proposer and send them to the counterparty.

    Example: lintas agreement propose aus-idn-2027.json
    """
    try:
        doc = json.loads(read_file(terms, "TERMS.json"))
    except ValueError as exc:
        fail(f"TERMS.json: not JSON: {exc}")
    show(Client.of(node, token_file).call("POST", "/api/v1/agreements", json=doc))


@app.command()
def countersign(agreement: AgreementId, node: NodeUrl = DEFAULT_NODE,
                token_file: TokenFile = None) -> None:
    """Countersign a received proposal; it is registered at the hub and comes into force.

    Example: lintas agreement countersign AUS-IDN-2027-01
    """
    show(Client.of(node, token_file).call("POST", f"/api/v1/agreements/{agreement}/countersign"))


@app.command()
def decline(agreement: AgreementId, reason: Reason, node: NodeUrl = DEFAULT_NODE,
            token_file: TokenFile = None) -> None:
    """Decline a received proposal.

    Example: lintas agreement decline AUS-IDN-2027-01 --reason "quotas too high"
    """
    show(Client.of(node, token_file).call("POST", f"/api/v1/agreements/{agreement}/decline",
                                          json={"reason": reason}))


def _status(agreement: str, status: str, reason: str, node: str,
            token_file: Path | None) -> None:
    show(Client.of(node, token_file).call("POST", f"/api/v1/agreements/{agreement}/status",
                                          json={"status": status, "reason": reason}))


@app.command()
def suspend(agreement: AgreementId, reason: Reason, node: NodeUrl = DEFAULT_NODE,
            token_file: TokenFile = None) -> None:
    """Suspend an agreement: no new checks; checks under way may finish.

    Example: lintas agreement suspend AUS-IDN-2027-01 --reason "audit under way"
    """
    _status(agreement, "suspended", reason, node, token_file)


@app.command()
def resume(agreement: AgreementId, reason: Reason, node: NodeUrl = DEFAULT_NODE,
           token_file: TokenFile = None) -> None:
    """Resume a suspended agreement.

    Example: lintas agreement resume AUS-IDN-2027-01 --reason "audit closed"
    """
    _status(agreement, "active", reason, node, token_file)


@app.command()
def terminate(agreement: AgreementId, reason: Reason, node: NodeUrl = DEFAULT_NODE,
              token_file: TokenFile = None) -> None:
    """Terminate an agreement (final).

    Example: lintas agreement terminate AUS-IDN-2027-01 --reason "superseded"
    """
    _status(agreement, "terminated", reason, node, token_file)
