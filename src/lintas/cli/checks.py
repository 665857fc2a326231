"""`lintas check ...`: identity checks, as a node user through the node's REST API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lintas.cli.client import (
    DEFAULT_NODE,
    Client,
    NodeUrl,
    TokenFile,
    b64,
    position_and_path,
    read_file,
)
from lintas.cli.common import console, fail
from lintas.policy import PURPOSES
from lintas.policy.agreements import DATA_CATEGORIES

app = typer.Typer(
    help="Submit identity checks to a partner and follow them; step 2 (ask for the record "
         "behind a hit, or decide a partner's request); review a partner's held requests. "
         "Acts as the user whose API token is given (LINTAS_TOKEN or --token-file) on the "
         "node at --node / LINTAS_NODE_URL.",
    no_args_is_help=True)

LONG_POLL_S = 30.0  # one request waits at most this long for a change (the node allows 60)
ANSWERED = {"hit", "no_hit", "refused", "expired", "cancelled", "disclosed",
            "disclosure_denied", "closed", "purged"}

Wait = Annotated[float, typer.Option(
    "--wait", min=0, max=3600, help="Wait up to this many seconds for the answer (0: do not).")]
CheckId = Annotated[str, typer.Argument(metavar="CHECK", help="The check's id.")]


def show(check: dict[str, Any]) -> None:
    table = Table(show_header=False, title=f"check {check['id']}")
    for key in ("side", "partner", "agreement", "purpose", "query_type", "state", "outcome",
                "decision", "created_at", "deadline", "retain_until"):
        if check.get(key) is not None:
            table.add_row(key, str(check[key]))
    if check.get("hit_fpir") is not None:
        table.add_row("hit at", f"FPIR ≤ {check['hit_fpir']:g} (as agreed: a search for "
                                f"someone not enrolled turns up a candidate that rarely)")
    if check.get("error"):
        table.add_row("error", f"{check['error']['code']}: {check['error']['message']}")
    for c in check.get("candidates") or []:
        extra = f" (your record {c['reference']})" if c.get("reference") else ""
        fmr = f", FMR {c['fmr']}" if "fmr" in c else ""
        fmr += f", FPIR {c['fpir']}" if "fpir" in c else ""
        table.add_row(f"candidate {c['candidate']}", f"rank {c['rank']}{fmr}{extra}")
    if check.get("disclosure_request"):
        req = check["disclosure_request"]
        table.add_row("step 2 asked", f"{req['candidate']}: {', '.join(req['categories'])} "
                                      f"({req['justification']})")
    for key, value in (check.get("disclosed") or {}).items():
        table.add_row(f"disclosed {key}", value)
    console.print(table)


def wait_for(client: Client, check_id: str, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    check: dict[str, Any] = client.call("GET", f"/api/v1/checks/{check_id}")
    with console.status(f"waiting for {check['partner']}'s answer"):
        while check["state"] not in ANSWERED and (left := deadline - time.monotonic()) > 0:
            # A long poll: the node answers as soon as the state changes.
            check = client.call("GET", f"/api/v1/checks/{check_id}", params={
                "changed_from": check["state"], "wait": round(min(left, LONG_POLL_S), 1)})
    return check


@app.command()
def submit(
    partner: Annotated[str, typer.Option(help="The member asked, e.g. IDN.")],
    agreement: Annotated[str, typer.Option(help="The agreement the check is made under.")],
    purpose: Annotated[str, typer.Option(help=f"One of {', '.join(PURPOSES)}.")],
    finger: Annotated[list[str] | None, typer.Option(
        "--finger", metavar="POSITION=FILE",
        help="A fingerprint image (PNG, TIFF, BMP, JPEG, WSQ); repeat for more fingers.")]
    = None,
    template: Annotated[list[str] | None, typer.Option(
        "--template", metavar="POSITION=FILE",
        help="An ISO/IEC 19794-2 or ANSI/INCITS 378 minutiae template.")] = None,
    ansi_nist: Annotated[Path | None, typer.Option(
        "--ansi-nist", exists=True, dir_okay=False,
        help="An ANSI/NIST-ITL 1-2011 transaction holding the fingers.")] = None,
    ppi: Annotated[float | None, typer.Option(
        min=100, max=2000, help="The images' resolution when their files do not say.")] = None,
    target: Annotated[str | None, typer.Option(
        help="A 1:1 check: the partner's record to verify against.")] = None,
    mrz: Annotated[str | None, typer.Option(
        help="A document check by MRZ: its lines separated by '\\n' (or --mrz-file).")] = None,
    mrz_file: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
    document_number: Annotated[str | None, typer.Option()] = None,
    issuing_state: Annotated[str | None, typer.Option()] = None,
    max_candidates: Annotated[int | None, typer.Option(min=1, max=100)] = None,
    wait: Wait = 30.0,
    node: NodeUrl = DEFAULT_NODE,
    token_file: TokenFile = None,
) -> None:
    """Check a person's fingerprints, or a travel document, against a partner's node.

    The query type follows from what is given: fingers or a transaction (1:N, or 1:1
    with --target), or a document (--mrz / --mrz-file, or --document-number with
    --issuing-state). Everything is checked before anything is sent.

    Example: lintas check submit --partner IDN --agreement AUS-IDN-2027-01
    --purpose border_control --finger 2=right-index.png
    """
    client = Client.of(node, token_file)
    fingers = []
    for value in finger or []:
        position, path = position_and_path(value, "--finger")
        fingers.append({"position": position, "kind": "image",
                        "data": b64(read_file(path, "--finger")), "ppi": ppi})
    for value in template or []:
        position, path = position_and_path(value, "--template")
        fingers.append({"position": position, "kind": "template",
                        "data": b64(read_file(path, "--template"))})
    if mrz_file is not None:
        mrz = read_file(mrz_file, "--mrz-file").decode("utf-8", "replace").strip()
    elif mrz is not None:
        mrz = mrz.replace("\\n", "\n")
    document: dict[str, str | None] | None = None
    if mrz is not None:
        document = {"mrz": mrz}
    elif document_number is not None or issuing_state is not None:
        document = {"number": document_number, "issuing_state": issuing_state}
    biometric = bool(fingers or ansi_nist)
    if document is not None and biometric:
        fail("give fingerprints or a document, not both")
    if document is None and not biometric:
        fail("give --finger, --template or --ansi-nist, or a document (--mrz, "
             "--document-number with --issuing-state)")
    body: dict[str, Any] = {
        "partner": partner, "agreement": agreement, "purpose": purpose,
        "query_type": "document" if document else
        ("fingerprint_1to1" if target else "fingerprint_1n")}
    if fingers:
        body["fingers"] = fingers
    if ansi_nist is not None:
        body["ansi_nist"] = b64(read_file(ansi_nist, "--ansi-nist"))
    optional: dict[str, Any] = {"target": target, "document": document,
                                "max_candidates": max_candidates}
    body.update({k: v for k, v in optional.items() if v is not None})
    check = client.call("POST", "/api/v1/checks", json=body)
    console.print(f"[green]check {check['id']} sent[/] to {partner}")
    if wait:
        check = wait_for(client, check["id"], wait)
    show(check)


@app.command()
def status(check_id: CheckId, wait: Wait = 0.0, node: NodeUrl = DEFAULT_NODE,
           token_file: TokenFile = None) -> None:
    """Show a check (optionally waiting for its answer).

    Example: lintas check status 1b4e28ba-2fa1-11d2-883f-0016d3cca427 --wait 30
    """
    client = Client.of(node, token_file)
    show(wait_for(client, check_id, wait) if wait else
         client.call("GET", f"/api/v1/checks/{check_id}"))


@app.command("list")
def list_checks(
    side: Annotated[str | None, typer.Option(
        help="requester (ours) or responder (partners' requests).")] = None,
    state: Annotated[str | None, typer.Option(
        help="e.g. awaiting_review, disclosure_pending, hit.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    node: NodeUrl = DEFAULT_NODE,
    token_file: TokenFile = None,
) -> None:
    """Recent checks, newest first.

    Example: lintas check list --side responder --state disclosure_pending
    """
    if side not in (None, "requester", "responder"):
        fail(f"--side: {side!r} is not requester or responder")
    params: dict[str, Any] = {"limit": limit}
    if side:
        params["side"] = side
    if state:
        params["state"] = state
    rows = Client.of(node, token_file).call("GET", "/api/v1/checks", params=params)
    table = Table("id", "side", "partner", "purpose", "type", "state", "created",
                  title=f"{len(rows)} checks")
    for c in rows:
        table.add_row(c["id"], c["side"], c["partner"], c["purpose"], c["query_type"],
                      c["state"], c["created_at"][:19])
    console.print(table)


@app.command()
def disclose(
    check_id: CheckId,
    candidate: Annotated[str, typer.Option(help="The candidate of the hit, e.g. c1.")],
    category: Annotated[list[str], typer.Option(
        "--category", help=f"Repeat: {', '.join(DATA_CATEGORIES)} (as the agreement allows).")],
    justification: Annotated[str, typer.Option(help="Why the record is needed.")],
    node: NodeUrl = DEFAULT_NODE,
    token_file: TokenFile = None,
) -> None:
    """Step 2: ask the partner for the record behind a hit.

    Example: lintas check disclose CHECK --candidate c1 --category name
    --category nationality --justification "asylum claim under examination"
    """
    show(Client.of(node, token_file).call(
        "POST", f"/api/v1/checks/{check_id}/disclosure-request",
        json={"candidate": candidate, "categories": category, "justification": justification}))


@app.command()
def decide(
    check_id: CheckId,
    approve: Annotated[list[str] | None, typer.Option(
        "--approve", help="A requested category to disclose; repeat. None: denied.")] = None,
    reason: Annotated[str | None, typer.Option(help="Required when denying.")] = None,
    node: NodeUrl = DEFAULT_NODE,
    token_file: TokenFile = None,
) -> None:
    """Step 2 at the responder (supervisor): disclose all, some or none of the categories.

    Example: lintas check decide CHECK --approve name
    """
    body: dict[str, Any] = {"approve": approve or []}
    if reason is not None:
        body["reason"] = reason
    show(Client.of(node, token_file).call("POST", f"/api/v1/checks/{check_id}/decision",
                                          json=body))


@app.command()
def release(check_id: CheckId, node: NodeUrl = DEFAULT_NODE,
            token_file: TokenFile = None) -> None:
    """Review mode (supervisor): let a partner's held request be matched and answered.

    Example: lintas check release CHECK
    """
    show(Client.of(node, token_file).call("POST", f"/api/v1/checks/{check_id}/release"))


def _with_reason(action: str, check_id: str, reason: str, node: str,
                 token_file: Path | None) -> None:
    show(Client.of(node, token_file).call("POST", f"/api/v1/checks/{check_id}/{action}",
                                          json={"reason": reason}))


Reason = Annotated[str, typer.Option(help="Why (recorded in the audit trail).")]


@app.command()
def reject(check_id: CheckId, reason: Reason, node: NodeUrl = DEFAULT_NODE,
           token_file: TokenFile = None) -> None:
    """Review mode (supervisor): refuse a partner's held request; its probe is destroyed.

    Example: lintas check reject CHECK --reason "purpose not credible"
    """
    _with_reason("reject", check_id, reason, node, token_file)


@app.command()
def cancel(check_id: CheckId, reason: Reason, node: NodeUrl = DEFAULT_NODE,
           token_file: TokenFile = None) -> None:
    """Cancel one of our checks; the partner destroys the probe if it still holds it.

    Example: lintas check cancel CHECK --reason "traveller identified otherwise"
    """
    _with_reason("cancel", check_id, reason, node, token_file)


@app.command()
def close(check_id: CheckId, node: NodeUrl = DEFAULT_NODE,
          token_file: TokenFile = None) -> None:
    """Close an answered check.

    Example: lintas check close CHECK
    """
    show(Client.of(node, token_file).call("POST", f"/api/v1/checks/{check_id}/close"))


protection_app = typer.Typer(
    help="Protect gallery records (recognised refugee, trafficking victim, witness) from "
         "named states and/or purposes: no agreement overrides a protection, and a check "
         "that would find the record is answered exactly as a no-hit. Admin or supervisor, "
         "through the node's REST API.",
    no_args_is_help=True)
Reference = Annotated[str, typer.Argument(metavar="REFERENCE",
                                          help="The gallery record's reference.")]


@protection_app.command("add")
def protection_add(
    reference: Reference,
    kind: Annotated[str, typer.Option(help="refugee, victim or witness.")],
    state: Annotated[list[str] | None, typer.Option(
        "--state", help="Never disclosed to this member; repeat.")] = None,
    purpose: Annotated[list[str] | None, typer.Option(
        "--purpose", help="Never disclosed for this purpose; repeat.")] = None,
    reason: Annotated[str | None, typer.Option(help="Recorded with the protection.")] = None,
    node: NodeUrl = DEFAULT_NODE,
    token_file: TokenFile = None,
) -> None:
    """Protect a record.

    Example: lintas protection add ID-4471 --kind refugee --state MMR --reason "UNHCR
    recognised"
    """
    body: dict[str, Any] = {"kind": kind, "states": state or [], "purposes": purpose or []}
    if reason is not None:
        body["reason"] = reason
    added = Client.of(node, token_file).call(
        "POST", f"/api/v1/gallery/persons/{reference}/protections", json=body)
    console.print(f"[green]protection {added['id']} added[/] to {reference}: {added['kind']}, "
                  f"states {', '.join(added['states']) or '-'}, purposes "
                  f"{', '.join(added['purposes']) or '-'}")


@protection_app.command("list")
def protection_list(reference: Reference, node: NodeUrl = DEFAULT_NODE,
                    token_file: TokenFile = None) -> None:
    """The protections of a record.

    Example: lintas protection list ID-4471
    """
    rows = Client.of(node, token_file).call(
        "GET", f"/api/v1/gallery/persons/{reference}/protections")
    table = Table("id", "kind", "states", "purposes", "reason", "by", "since",
                  title=f"protections of {reference}")
    for p in rows:
        table.add_row(str(p["id"]), p["kind"], ", ".join(p["states"]), ", ".join(p["purposes"]),
                      p["reason"] or "", p["created_by"], p["created_at"][:19])
    console.print(table)
