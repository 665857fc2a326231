"""The data-protection report: what a node did under each agreement in a period, read
from its audit trail (docs/audit.md, "Data-protection report").

The figures come from the hash-chained audit log, not from the `checks` table: the log
is the record that cannot be changed unnoticed, and it keeps what the table forgets (a
purged check, a destroyed probe). The chain is verified while it is read; a report from
a trail that is not intact is refused unless the caller asks for it anyway, and is then
marked as such.

Every figure counts the audit entries dated in the period (UTC days, both ends
included), per agreement and per side: `requester` (the requests we sent) and
`responder` (the requests we answered). A check started before the period and answered
in it counts among the answers, with its whole response time. Running the report again
for a closed period gives the same figures.

    report = build_report(node, "AUS-IDN-2027-01", date(2027, 1, 1), date(2027, 1, 31))
    text = to_csv(report)            # one row per agreement x side x metric x key
    lines = summary_lines(report)    # the same figures, to read
    report.as_dict()                 # the same, JSON-able
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select

from lintas.audit import AuditEntry, Problem, Witness, verify
from lintas.node.audit import AuditLog
from lintas.node.models import NodeAgreement, Setting
from lintas.node.runtime import Node
from lintas.policy import Agreement, AgreementError, effective_state
from lintas.policy.agreements import PURPOSES, QUERY_TYPES, terms_of
from lintas.storage import Database, utcnow

SIDES = ("requester", "responder")
SIDE_LABELS = {"requester": "requests we sent", "responder": "requests we answered"}
OUTCOMES = ("hit", "no_hit", "refused", "expired", "cancelled")
DECISIONS = ("approved", "partial", "denied", "expired")
MAX_DAYS = 3660  # ten years: a longer period is a mistake, not a report
# The agreement id rule of lintas.policy.agreements.check_terms.
AGREEMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,63}")
CSV_COLUMNS = ("member", "agreement", "partner", "side", "period_from", "period_to",
               "metric", "key", "value", "chain_intact")

# The audit actions that start, answer and end a check, by side.
_START = {"requester": "check.submit", "responder": "check.received"}
_ANSWER = {"requester": "check.answer", "responder": "check.match"}
_REFUSED = {"requester": "check.refused", "responder": "check.refuse"}
_DECISION = {"requester": "check.disclosure", "responder": "check.disclosure_decision"}


class ReportError(ValueError):
    """A report that cannot be made as asked; `field` names the input at fault (from, to,
    agreement, audit)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class BrokenChain(ReportError):
    """The audit trail does not verify: figures read from it cannot be trusted."""

    def __init__(self, chain: ChainStatus) -> None:
        first = chain.problems[0].message if chain.problems else ""
        super().__init__("audit", f"the audit trail is not intact ({len(chain.problems)} "
                                  f"problem(s), first: {first}); its figures cannot be "
                                  "trusted. Run `lintas audit verify` to see every problem")
        self.chain = chain


@dataclass(frozen=True)
class ChainStatus:
    """What verifying the trail found when the report was read from it."""

    intact: bool
    entries: int
    head: Witness | None
    witnesses: int  # chain heads (the hub's, or noted) checked besides the chain itself
    problems: tuple[Problem, ...]


@dataclass(frozen=True)
class ResponseTimes:
    """Seconds from the start of a check to its answer, over the answers in the period:
    requester, check.submit to the partner's check.answer; responder, check.received to
    our check.match or check.refuse (review time included). p95 is the nearest-rank 95th
    percentile. None when there was no answer."""

    count: int
    median: float | None
    p95: float | None
    max: float | None

    @staticmethod
    def of(seconds: Iterable[float]) -> ResponseTimes:
        values = sorted(max(0.0, s) for s in seconds)  # clocks never run back in one log
        if not values:
            return ResponseTimes(0, None, None, None)
        p95 = values[math.ceil(0.95 * len(values)) - 1]
        return ResponseTimes(len(values), round(statistics.median(values), 3),
                             round(p95, 3), round(values[-1], 3))


@dataclass(frozen=True)
class QuotaUse:
    """The checks that count against the agreement's quotas for this direction (None
    when this node holds no terms for it): requester side, the requests the hub accepted
    (it counts no other); responder side, every request received. Days and years are
    UTC; a year counts from 1 January to the period's end (or 31 December)."""

    daily_quota: int | None
    max_per_day: int
    busiest_day: date | None
    annual_quota: int | None
    annual_used: Mapping[int, int]  # year -> checks that year, up to the period's end


@dataclass(frozen=True)
class SideReport:
    side: str  # requester | responder
    checks: int  # checks started in the period (submitted / received)
    by_query_type: Mapping[str, int]
    by_purpose: Mapping[str, int]
    outcomes: Mapping[str, int]  # OUTCOMES: how checks ended in the period
    disclosure_requests: int  # step-2 requests sent / received
    decisions: Mapping[str, int]  # DECISIONS: step-2 answers received / given
    response_seconds: ResponseTimes
    quota: QuotaUse
    # Candidates a protection kept out of our answers. Responder side of our own report
    # only, and only when asked for (it tells that protected people are in the gallery).
    withheld: int | None = None


@dataclass(frozen=True)
class AgreementReport:
    agreement: str
    partner: str | None
    status: str | None  # as this node holds it now; None when it holds no such agreement
    sides: tuple[SideReport, ...]

    def side(self, name: str) -> SideReport | None:
        return next((s for s in self.sides if s.side == name), None)


@dataclass(frozen=True)
class Report:
    member: str | None
    start: date
    end: date
    generated_at: datetime
    chain: ChainStatus
    agreements: tuple[AgreementReport, ...]

    def agreement(self, agreement_id: str) -> AgreementReport | None:
        return next((a for a in self.agreements if a.agreement == agreement_id), None)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-able values: dates in ISO 8601, years as text keys, and no
        `withheld` where it is not reported."""
        out = _jsonable(self)
        for a in out["agreements"]:
            for s in a["sides"]:
                if s["withheld"] is None:
                    del s["withheld"]
        return out  # type: ignore[no-any-return]


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    return value


# --- building -------------------------------------------------------------------------


def build_report(source: Node | Database, agreement: str | None, start: date, end: date,
                 *, witnesses: Iterable[Witness] = (), allow_broken: bool = False,
                 sensitive: bool = True, now: datetime | None = None) -> Report:
    """The report of the node `source` (a Node, or its Database) for one agreement, or
    every agreement it holds or acted under (None), from `start` to `end` (UTC days,
    both included).

    The audit trail is verified as it is read, against `witnesses` too (heads the hub
    witnessed); if it is not intact, raises BrokenChain unless `allow_broken`, and the
    report then says so. `sensitive=False` leaves out the withheld count (for readers
    who may not learn that protected records exist). Raises ReportError naming the field
    for a bad period or agreement id, or an agreement this node never knew."""
    start, end = _period(start, end)
    if agreement is not None and (not isinstance(agreement, str)
                                  or not AGREEMENT_ID.fullmatch(agreement)):
        raise ReportError("agreement", f"{agreement!r} is not an agreement id (3-64 "
                                       "characters A-Z a-z 0-9 . _ -, e.g. AUS-IDN-2027-01)")
    db = source.db if isinstance(source, Node) else source
    member = source.member if isinstance(source, Node) else _member(db)
    witnesses = list(witnesses)
    tally = _Tally(start, end, agreement)
    verification = verify(tally.read(AuditLog(db).entries()), witnesses)
    chain = ChainStatus(verification.intact, verification.entries, verification.head,
                        len(witnesses), verification.problems)
    if not chain.intact and not allow_broken:
        raise BrokenChain(chain)
    now = now or utcnow()
    held = _held(db, now)
    if agreement is not None:
        if agreement not in held and agreement not in tally.known:
            raise ReportError("agreement", f"{agreement} is not known to this node: it holds "
                                           "no such agreement and its audit trail never "
                                           "mentions it")
        ids = [agreement]
    else:
        ids = sorted({a for a, (status, terms) in held.items()
                      if status not in ("proposed", "received", "declined")
                      and terms is not None and terms.valid_from <= end
                      and terms.valid_until >= start} | tally.active)
    reports = []
    for agreement_id in ids:
        status, terms = held.get(agreement_id, (None, None))
        partner = tally.partners.get(agreement_id)
        if terms is not None and member in terms.parties:
            partner = terms.other(member)
        sides = []
        for side in SIDES:
            counts = tally.counts.get((agreement_id, side))
            direction = None
            if terms is not None and member and partner:
                direction = (terms.direction(member, partner) if side == "requester"
                             else terms.direction(partner, member))
            if counts is None and direction is None:
                continue
            sides.append((counts or _Counts()).side_report(
                side, start, end, direction.daily_quota if direction else None,
                direction.annual_quota if direction else None, sensitive))
        reports.append(AgreementReport(agreement_id, partner, status, tuple(sides)))
    return Report(member, start, end, now, chain, tuple(reports))


def parse_day(text: str, field: str) -> date:
    """A day given as YYYY-MM-DD, or ReportError naming `field`."""
    try:
        if len(text.strip()) != 10:
            raise ValueError
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ReportError(field, f"{text!r} is not a date like 2027-01-31") from None


def _period(start: date, end: date) -> tuple[date, date]:
    for name, day in (("from", start), ("to", end)):
        if isinstance(day, datetime) or not isinstance(day, date):
            raise ReportError(name, f"{day!r} is not a day (a date like 2027-01-31)")
    if start > end:
        raise ReportError("to", f"{end.isoformat()} is before the period's start "
                                f"({start.isoformat()})")
    if (end - start).days + 1 > MAX_DAYS:
        raise ReportError("from", f"a period of at most {MAX_DAYS} days (this one has "
                                  f"{(end - start).days + 1})")
    return start, end


def _member(db: Database) -> str | None:
    with db.session() as s:
        row = s.get(Setting, "member")
        return row.value if row is not None else None


def _held(db: Database, now: datetime) -> dict[str, tuple[str, Agreement | None]]:
    """Agreement id -> (its state as held now, its terms)."""
    with db.session() as s:
        rows = list(s.scalars(select(NodeAgreement)))
    held: dict[str, tuple[str, Agreement | None]] = {}
    for row in rows:
        try:
            terms: Agreement | None = terms_of(row.document)
        except (AgreementError, ValueError, KeyError):
            terms = None  # reported without quotas rather than not at all
        state = (effective_state(row.status, terms, now)
                 if row.status == "active" and terms is not None else row.status)
        held[row.id] = (state, terms)
    return held


@dataclass
class _Track:
    started: datetime
    answered: bool = False


@dataclass
class _Counts:
    checks: int = 0
    query_types: Counter[str] = field(default_factory=Counter)
    purposes: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    disclosure_requests: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)
    per_day: Counter[date] = field(default_factory=Counter)
    per_year: Counter[int] = field(default_factory=Counter)
    withheld: int = 0

    def side_report(self, side: str, start: date, end: date, daily: int | None,
                    annual: int | None, sensitive: bool) -> SideReport:
        days = {d: n for d, n in self.per_day.items() if n > 0}
        busiest = min(days, key=lambda d: (-days[d], d)) if days else None
        quota = QuotaUse(daily, days[busiest] if busiest else 0, busiest, annual,
                         {y: self.per_year[y] for y in range(start.year, end.year + 1)})
        return SideReport(
            side, self.checks, _keyed(self.query_types, QUERY_TYPES),
            _keyed(self.purposes, PURPOSES), _keyed(self.outcomes, OUTCOMES),
            self.disclosure_requests, _keyed(self.decisions, DECISIONS),
            ResponseTimes.of(self.seconds), quota,
            self.withheld if side == "responder" and sensitive else None)


def _keyed(counter: Counter[str], known: tuple[str, ...]) -> dict[str, int]:
    """Every known key (zeros included, so that reports line up), then any other."""
    return {**{k: counter[k] for k in known},
            **{k: n for k, n in sorted(counter.items()) if k not in known}}


class _Tally:
    """Counts the check entries of the trail as they stream past the verifier."""

    def __init__(self, start: date, end: date, agreement: str | None) -> None:
        self.first = datetime.combine(start, time.min, UTC)
        self.last = datetime.combine(end, time.max, UTC)
        self.years = range(start.year, end.year + 1)
        self.agreement = agreement
        self.tracks: dict[tuple[str, str], _Track] = {}
        self.counts: dict[tuple[str, str], _Counts] = {}
        self.known: set[str] = set()  # agreements of any check entry
        self.active: set[str] = set()  # ... of a check entry in the period
        self.partners: dict[str, str] = {}

    def read(self, entries: Iterable[AuditEntry]) -> Iterator[AuditEntry]:
        for entry in entries:
            self.add(entry)
            yield entry

    def add(self, entry: AuditEntry) -> None:
        d = entry.details
        check, agreement = d.get("check"), entry.agreement
        # check.submit is written before the check has a side in its details.
        side = "requester" if entry.action == "check.submit" else d.get("side")
        if (not entry.action.startswith("check.") or side not in SIDES
                or not isinstance(check, str) or not agreement):
            return
        assert isinstance(side, str)
        self.known.add(agreement)
        if self.agreement is not None and agreement != self.agreement:
            return
        at, action = entry.at, entry.action
        if at > self.last:
            return  # after the period: nothing in it depends on what came later
        in_period = at >= self.first
        if in_period:
            self.active.add(agreement)
            if isinstance(d.get("partner"), str):
                self.partners.setdefault(agreement, str(d["partner"]))
        counts = self.counts.setdefault((agreement, side), _Counts())
        track = self.tracks.get((side, check))
        if action == _START[side]:
            self.tracks[side, check] = _Track(at)
            if at.year in self.years:
                counts.per_year[at.year] += 1
            if in_period:
                counts.checks += 1
                counts.query_types[str(d.get("query_type"))] += 1
                counts.purposes[entry.purpose or "unknown"] += 1
                counts.per_day[at.date()] += 1
            return
        if action in (_ANSWER[side], _REFUSED[side]):
            if track is not None:
                track.answered = True
                if action == "check.refused":
                    self._uncount(counts, track)
            if not in_period:
                return
            outcome = entry.outcome if action == _ANSWER[side] else "refused"
            counts.outcomes[outcome if outcome in OUTCOMES else "refused"] += 1
            # A refusal by the hub is no answer from the partner: no response time.
            if track is not None and action != "check.refused":
                counts.seconds.append((at - track.started).total_seconds())
            withheld = d.get("withheld")
            if action == "check.match" and isinstance(withheld, int):
                counts.withheld += withheld
        elif not in_period:
            return
        elif action == "check.expire":
            # After an answer only step 2 can expire (a disclosure left undecided).
            if track is not None and track.answered:
                counts.decisions["expired"] += 1
            else:
                counts.outcomes["expired"] += 1
        elif action == "check.cancel":
            counts.outcomes["cancelled"] += 1
        elif action == "check.disclosure_request":
            counts.disclosure_requests += 1
        elif action == _DECISION[side]:
            counts.decisions[entry.outcome] += 1

    def _uncount(self, counts: _Counts, track: _Track) -> None:
        """A request the hub refused does not count against the quota (the hub counts
        only what it accepts)."""
        if track.started.year in self.years:
            counts.per_year[track.started.year] -= 1
        if track.started >= self.first:
            counts.per_day[track.started.date()] -= 1


# --- output ---------------------------------------------------------------------------


def _number(value: float | int | None) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def metrics(side: SideReport) -> list[tuple[str, str, str]]:
    """The side's figures as (metric, key, value) text, in CSV order."""
    rows = [("checks", "total", str(side.checks))]
    rows += [("query_type", k, str(n)) for k, n in side.by_query_type.items()]
    rows += [("purpose", k, str(n)) for k, n in side.by_purpose.items()]
    rows += [("outcome", k, str(n)) for k, n in side.outcomes.items()]
    rows.append(("disclosure_requests", "total", str(side.disclosure_requests)))
    rows += [("disclosure_decision", k, str(n)) for k, n in side.decisions.items()]
    t = side.response_seconds
    rows += [("response_seconds", "count", str(t.count)),
             ("response_seconds", "median", _number(t.median)),
             ("response_seconds", "p95", _number(t.p95)),
             ("response_seconds", "max", _number(t.max))]
    q = side.quota
    rows += [("daily_quota", "quota", _number(q.daily_quota)),
             ("daily_quota", "max_used", str(q.max_per_day)),
             ("daily_quota", "busiest_day", q.busiest_day.isoformat() if q.busiest_day else ""),
             ("annual_quota", "quota", _number(q.annual_quota))]
    rows += [("annual_quota", f"used_{year}", str(n)) for year, n in q.annual_used.items()]
    if side.withheld is not None:
        rows.append(("withheld", "total", str(side.withheld)))
    return rows


def _cell(text: str) -> str:
    """Text a spreadsheet will not run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(report: Report) -> str:
    """The report as CSV (RFC 4180, header first): one row per agreement x side x metric
    x key, columns CSV_COLUMNS; docs/audit.md lists every metric and key."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    intact = "true" if report.chain.intact else "false"
    for a in report.agreements:
        for side in a.sides:
            for metric, key, value in metrics(side):
                writer.writerow([_cell(v) for v in (
                    report.member or "", a.agreement, a.partner or "", side.side,
                    report.start.isoformat(), report.end.isoformat(), metric, key, value,
                    intact)])
    return out.getvalue()


def _counted(values: Mapping[str, int]) -> str:
    shown = [f"{k} {n}" for k, n in values.items() if n]
    return ", ".join(shown) or "none"


def _seconds(value: float | None) -> str:
    """A duration to read: 0.04 s, 12.50 s, 5 min 3 s, 2 h 5 min."""
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.2f} s"
    whole = round(value)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def figures(side: SideReport) -> list[tuple[str, str]]:
    """The side's figures as (label, readable value), for a summary or a table."""
    t, q = side.response_seconds, side.quota
    daily = f"{q.max_per_day} of {q.daily_quota if q.daily_quota is not None else '?'}"
    if q.busiest_day is not None:
        daily += f" (on {q.busiest_day.isoformat()})"
    annual = "; ".join(f"{y}: {n} of {q.annual_quota if q.annual_quota is not None else '?'}"
                       for y, n in q.annual_used.items())
    rows = [
        ("checks", str(side.checks)),
        ("by query type", _counted(side.by_query_type)),
        ("by purpose", _counted(side.by_purpose)),
        ("outcomes", _counted(side.outcomes)),
        ("step-2 requests", str(side.disclosure_requests)),
        ("step-2 decisions", _counted(side.decisions)),
        ("response time", "no answers" if not t.count else
         f"{t.count} answers: median {_seconds(t.median)}, p95 {_seconds(t.p95)}, "
         f"max {_seconds(t.max)}"),
        ("busiest day vs daily quota", daily),
        ("year to date vs annual quota", annual),
    ]
    if side.withheld is not None:
        rows.append(("withheld by a protection", str(side.withheld)))
    return rows


def chain_line(chain: ChainStatus) -> str:
    against = f", checked against {chain.witnesses} witnessed head(s)" if chain.witnesses \
        else " (not checked against the hub's witness)"
    if chain.intact:
        head = f"head {chain.head.seq}:{chain.head.digest[:16]}…" if chain.head \
            else "no entries yet"
        return f"audit trail intact: {chain.entries} entries, {head}{against}"
    return (f"AUDIT TRAIL NOT INTACT: {len(chain.problems)} problem(s) in {chain.entries} "
            f"entries{against}; these figures cannot be trusted")


def summary_lines(report: Report) -> list[str]:
    """The report as plain text lines, to read or to mail."""
    lines = [f"Data-protection report of {report.member or 'this node'}, "
             f"{report.start.isoformat()} to {report.end.isoformat()} (UTC days)",
             chain_line(report.chain)]
    if not report.agreements:
        lines.append("no agreement held or used in this period")
    for a in report.agreements:
        lines.append(f"agreement {a.agreement} with {a.partner or '?'} "
                     f"({a.status or 'not held by this node'})")
        if not a.sides:
            lines.append("  no checks either way")
        for side in a.sides:
            lines.append(f"  {SIDE_LABELS[side.side]}:")
            lines += [f"    {label}: {value}" for label, value in figures(side)]
    return lines


def default_period(today: date | None = None, days: int = 30) -> tuple[date, date]:
    """The last `days` days, today (UTC) included."""
    end = today or utcnow().date()
    return end - timedelta(days=days - 1), end
