"""The gallery: enrolment (one person, or a bulk import followed by its progress),
deletion, the data disclosable at step 2, protections, and the calibration tables that
turn its scores into false match rates."""


from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from lintas.biometrics.matching import Calibrations, MatchError
from lintas.node.api.checks import FingerIn, finger_inputs
from lintas.node.api.common import ERRORS, Context, NotFound
from lintas.node.checks import PROTECTION_KINDS
from lintas.node.gallery import MAX_LABEL, MAX_REFERENCE, Gallery, GalleryError
from lintas.node.imports import MAX_ITEMS, ImportItem
from lintas.node.samples import B64_MAX, decode_base64, samples
from lintas.node.users import ROLES, Principal
from lintas.policy import PURPOSES
from lintas.policy.agreements import DATA_CATEGORIES

Reference = Annotated[str, Path(min_length=1, max_length=MAX_REFERENCE)]


class PersonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: str | None = Field(None, min_length=1, max_length=MAX_REFERENCE,
                                  description="the national record id (bulk imports: may be "
                                              "left out when ansi_nist gives its TCN)")
    label: str | None = Field(None, max_length=MAX_LABEL)
    fingers: list[FingerIn] = Field(default_factory=list, max_length=10)
    ansi_nist: str | None = Field(None, max_length=B64_MAX,
                                  description="an ANSI/NIST-ITL 1-2011 transaction, base64")


class EnrolIn(PersonIn):
    reference: str = Field(min_length=1, max_length=MAX_REFERENCE,  # type: ignore[assignment]
                           description="the national record id")
    replace: bool = Field(False, description="replace the fingers of a person already "
                                             "enrolled (otherwise refused)")


class FingerOut(BaseModel):
    position: int
    impression: int
    nfiq2: int | None
    minutiae_count: int


class RejectionOut(BaseModel):
    index: int
    position: int
    reason: str


class EnrolOut(BaseModel):
    reference: str
    enrolled: bool
    fingers: list[FingerOut]
    rejected: list[RejectionOut]
    replaced: int


class PersonSummaryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    reference: str
    label: str | None
    fingers: int
    created_at: datetime
    updated_at: datetime


class PersonOut(BaseModel):
    reference: str
    label: str | None
    created_at: datetime
    updated_at: datetime
    fingers: list[FingerOut]


class ImportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    persons: list[PersonIn] = Field(min_length=1, max_length=MAX_ITEMS)
    replace: bool = False


class ImportOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    state: str = Field(description="running, done, or interrupted (the node stopped)")
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    total: int
    done: int
    persons: int
    fingers: int
    rejected: list[dict[str, object]]


class PersonDataIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: dict[Literal[DATA_CATEGORIES], str] = Field(  # type: ignore[valid-type]
        description="what may be disclosed at step 2, by category")


class ProtectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal[PROTECTION_KINDS]  # type: ignore[valid-type]
    states: list[str] = Field(default_factory=list, max_length=60,
                              description="never disclosed to these members")
    purposes: list[Literal[PURPOSES]] = Field(  # type: ignore[valid-type]
        default_factory=list, max_length=len(PURPOSES))
    reason: str | None = Field(None, max_length=2000)


class ProtectionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    reference: str
    kind: str
    states: list[str]
    purposes: list[str]
    reason: str | None
    created_by: str
    created_at: datetime


class CalibrationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    single: dict[str, Any] = Field(description="the single-view table, as "
                                               "benchmarks/fingerprint.py --calibration-out "
                                               "writes it")
    phased: dict[str, Any] = Field(description="the phased table (--phase-calibration-out)")


class CalibrationOut(BaseModel):
    own: bool = Field(description="the node's own tables (false: the shipped ones)")
    single: dict[str, Any]
    phased: dict[str, Any]


def _calibration_out(gallery: Gallery) -> CalibrationOut:
    tables = gallery.calibrations().as_json()
    return CalibrationOut(own=gallery.own_calibrations(), single=tables["single"],
                          phased=tables["phased"])


class Deleted(BaseModel):
    reference: str
    fingers_removed: int


def router(ctx: Context) -> APIRouter:
    r = APIRouter(prefix="/api/v1/gallery", tags=["gallery"], responses=ERRORS)
    services = ctx.services
    Admin = Annotated[Principal, ctx.allow("admin")]  # noqa: N806
    Protector = Annotated[Principal, ctx.allow("admin", "supervisor")]  # noqa: N806
    Anyone = Annotated[Principal, ctx.allow(*ROLES)]  # noqa: N806

    @r.post("/persons", status_code=201, response_model=EnrolOut)
    async def enrol(req: EnrolIn, actor: Admin) -> EnrolOut:
        """Enrol one person: every print is quality-checked (NFIQ 2) and must show
        enough minutiae; one rejected print refuses the whole person (`enrolled` false,
        every rejection with the reason), so the officer recaptures it."""
        def work() -> EnrolOut:
            given = samples(finger_inputs(req.fingers),
                            decode_base64(req.ansi_nist, "ansi_nist") if req.ansi_nist else None)
            result = services.enrol(actor, req.reference, given, label=req.label,
                                    replace=req.replace)
            return EnrolOut(reference=result.reference, enrolled=result.enrolled,
                            fingers=[FingerOut(position=f.position, impression=f.impression,
                                               nfiq2=f.nfiq2, minutiae_count=f.minutiae_count)
                                     for f in result.fingers],
                            rejected=[RejectionOut(index=x.index, position=x.position,
                                                   reason=x.reason) for x in result.rejected],
                            replaced=result.removed)

        return await ctx.run(work)

    @r.get("/persons", response_model=list[PersonSummaryOut])
    async def persons(actor: Admin, limit: int = Query(50, ge=1, le=1000),
                      offset: int = Query(0, ge=0, le=10**9)) -> list[PersonSummaryOut]:
        rows = await ctx.run(services.gallery.persons, limit, offset)
        return [PersonSummaryOut.model_validate(p) for p in rows]

    @r.get("/persons/{reference}", response_model=PersonOut)
    async def person(reference: Reference, actor: Admin) -> PersonOut:
        found = await ctx.run(services.gallery.get, reference)
        if found is None:
            raise NotFound(f"reference: {reference!r} is not in the gallery")
        return PersonOut(reference=found.reference, label=found.label,
                         created_at=found.created_at, updated_at=found.updated_at,
                         fingers=[FingerOut(position=f.position, impression=f.impression,
                                            nfiq2=f.nfiq2, minutiae_count=f.minutiae_count)
                                  for f in found.fingers])

    @r.delete("/persons/{reference}", response_model=Deleted)
    async def delete(reference: Reference, actor: Admin) -> Deleted:
        return Deleted(reference=reference,
                       fingers_removed=await ctx.run(services.delete, actor, reference))

    @r.put("/persons/{reference}/data", status_code=204)
    async def person_data(reference: Reference, req: PersonDataIn, actor: Admin) -> None:
        """Replace what may be disclosed about the person at step 2 (only what an
        agreement allows is ever sent, and only after a supervisor approves)."""
        await ctx.run(services.checks.set_person_data, actor, reference, dict(req.data))

    @r.get("/persons/{reference}/protections", response_model=list[ProtectionOut])
    async def protections(reference: Reference, actor: Protector) -> list[ProtectionOut]:
        rows = await ctx.run(services.checks.protections, actor, reference)
        return [ProtectionOut.model_validate(p) for p in rows]

    @r.post("/persons/{reference}/protections", status_code=201, response_model=ProtectionOut)
    async def protect(reference: Reference, req: ProtectionIn,
                      actor: Protector) -> ProtectionOut:
        """Protect a record (recognised refugee, trafficking victim, witness) from the
        named states and/or purposes: no agreement overrides it, and a check that would
        find it is answered exactly as a no-hit."""

        added = await ctx.run(services.checks.protect, actor, reference, req.kind,
                              req.states, req.purposes, req.reason)
        return ProtectionOut.model_validate(added)

    @r.get("/calibration", response_model=CalibrationOut)
    async def calibration(actor: Anyone) -> CalibrationOut:
        """The tables this node's searches read false match rates from: its own, or the
        shipped ones (FVC2004's sensors)."""
        return await ctx.run(_calibration_out, services.gallery)

    @r.put("/calibration", response_model=CalibrationOut)
    async def set_calibration(req: CalibrationIn, actor: Admin) -> CalibrationOut:
        """Use the node's own tables, measured on its own sensors' impostors: both are
        checked field by field before anything is stored (an error names the field), the
        change is audited, and it applies from the next search on."""
        def work() -> CalibrationOut:
            try:
                tables = Calibrations.from_json(req.model_dump())
            except MatchError as exc:
                raise GalleryError(str(exc)) from None
            services.gallery.set_calibrations(tables, actor)
            return _calibration_out(services.gallery)

        return await ctx.run(work)

    @r.delete("/calibration", response_model=CalibrationOut)
    async def reset_calibration(actor: Admin) -> CalibrationOut:
        """Go back to the shipped tables (audited)."""
        def work() -> CalibrationOut:
            services.gallery.set_calibrations(None, actor)
            return _calibration_out(services.gallery)

        return await ctx.run(work)

    @r.post("/imports", status_code=202, response_model=ImportOut)
    async def start_import(req: ImportIn, actor: Admin) -> ImportOut:
        """Bulk enrolment, run by the node in the background: follow it with
        GET /api/v1/gallery/imports/{id} (done / total, persons and fingers enrolled, and
        every rejected person with the reason). Each person is enrolled on its own, all
        prints or none; a rejected person does not stop the others."""
        items = [ImportItem(p.reference, finger_inputs(p.fingers, f"persons[{i}].fingers"),
                            decode_base64(p.ansi_nist, f"persons[{i}].ansi_nist")
                            if p.ansi_nist else None, p.label)
                 for i, p in enumerate(req.persons)]
        job = await ctx.run(services.imports.start, actor, items, req.replace)
        return ImportOut.model_validate(job)

    @r.get("/imports", response_model=list[ImportOut])
    async def imports(actor: Admin, limit: int = Query(20, ge=1, le=200)) -> list[ImportOut]:
        return [ImportOut.model_validate(j) for j in await ctx.run(services.imports.list, limit)]

    @r.get("/imports/{import_id}", response_model=ImportOut)
    async def import_status(import_id: str, actor: Admin) -> ImportOut:
        job = await ctx.run(services.imports.get, import_id)
        if job is None:
            raise NotFound(f"import: {import_id!r} is not an import of this node")
        return ImportOut.model_validate(job)

    return r
