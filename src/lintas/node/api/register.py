"""The register of lost, stolen and revoked travel documents."""


from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from lintas.node.api.common import ERRORS, Context, NotFound
from lintas.node.documents import DocumentError, ImportResult, RegisterEntry
from lintas.node.users import Principal

MAX_CSV = 20 * 1024 * 1024
EntryId = Annotated[int, Path(ge=1, le=2**62, description="the register entry's id")]


class EntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    document_number: str
    issuing_state: str
    document_type: str
    status: str
    reported_at: datetime
    reported_by: str
    reference: str | None
    note: str | None
    active: bool
    withdrawn_at: datetime | None
    withdrawn_by: str | None
    withdrawn_reason: str | None


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    document_number: str = Field(min_length=1, max_length=40)
    issuing_state: str = Field(min_length=1, max_length=10)
    document_type: str = Field(min_length=1, max_length=10, examples=["P"])
    status: str = Field(min_length=1, max_length=10, examples=["stolen"],
                        description="lost, stolen or revoked")
    reference: str | None = Field(None, max_length=200)
    note: str | None = Field(None, max_length=2000)


class WithdrawIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class DocumentCheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mrz: str | None = Field(None, max_length=200)
    number: str | None = Field(None, max_length=40)
    issuing_state: str | None = Field(None, max_length=10)


class DocumentCheckOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    hit: bool
    status: str | None
    document_type: str | None
    reported_at: datetime | None
    document_number: str
    issuing_state: str


class CsvIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    csv: str = Field(min_length=1, max_length=MAX_CSV,
                     description="the file's text: a header line, then one document a line "
                                 "(docs/documents.md)")


class RowErrorOut(BaseModel):
    line: int
    field: str
    message: str


class ImportOut(BaseModel):
    imported: int
    errors: list[RowErrorOut]


def entry_out(entry: RegisterEntry) -> EntryOut:
    return EntryOut.model_validate(entry)


def router(ctx: Context) -> APIRouter:
    r = APIRouter(prefix="/api/v1/documents", tags=["document register"], responses=ERRORS)
    register = ctx.services.register
    Admin = Annotated[Principal, ctx.allow("admin")]  # noqa: N806
    Reader = Annotated[Principal, ctx.allow("admin", "supervisor")]  # noqa: N806
    Checker = Annotated[Principal, ctx.allow("officer", "supervisor")]  # noqa: N806

    @r.get("", response_model=list[EntryOut])
    async def entries(actor: Reader, active_only: bool = True,
                      limit: int = Query(50, ge=1, le=1000),
                      offset: int = Query(0, ge=0, le=10**9)) -> list[EntryOut]:
        """Entries, newest report first; withdrawn ones too with active_only=false."""
        return [entry_out(x) for x in await ctx.run(register.list, active_only, limit, offset)]

    @r.get("/{entry_id}", response_model=EntryOut)
    async def entry(entry_id: EntryId, actor: Reader) -> EntryOut:
        found = await ctx.run(register.get, entry_id)
        if found is None:
            raise NotFound(f"entry: {entry_id} is not in the register")
        return entry_out(found)

    @r.post("", status_code=201, response_model=EntryOut)
    async def report(req: ReportIn, actor: Admin) -> EntryOut:
        """Register a document as lost, stolen or revoked (refused while it already has an
        active entry)."""
        return entry_out(await ctx.run(register.report, req.document_number,
                                       req.issuing_state, req.document_type, req.status,
                                       actor, req.reference, req.note))

    @r.post("/{entry_id}/withdraw", response_model=EntryOut)
    async def withdraw(entry_id: EntryId, req: WithdrawIn, actor: Admin) -> EntryOut:
        """Withdraw an active entry (a found passport); it stays as history."""
        return entry_out(await ctx.run(register.withdraw, entry_id, req.reason, actor))

    @r.post("/imports", response_model=ImportOut)
    async def import_csv(req: CsvIn, actor: Admin) -> ImportOut:
        """Register many documents from CSV, all or nothing: if any row is refused,
        nothing is written and every refusal comes back with its line and field."""
        result: ImportResult = await ctx.run(register.import_csv,
                                             req.csv.splitlines(keepends=True), actor)
        return ImportOut(imported=result.imported,
                         errors=[RowErrorOut(line=x.line, field=x.field, message=x.message)
                                 for x in result.errors])

    @r.post("/check", response_model=DocumentCheckOut)
    async def check(req: DocumentCheckIn, actor: Checker) -> DocumentCheckOut:
        """Is a document in this node's own register? By MRZ (every check digit
        verified) or by number and issuing state."""

        def work() -> DocumentCheckOut:
            if req.mrz is not None:
                if req.number is not None or req.issuing_state is not None:
                    raise DocumentError("mrz", "give mrz alone, or number and issuing_state")
                return DocumentCheckOut.model_validate(register.check_mrz(req.mrz))
            if req.number is None or req.issuing_state is None:
                raise DocumentError("number", "give mrz, or number and issuing_state")
            return DocumentCheckOut.model_validate(register.check_number(req.number,
                                                                         req.issuing_state))

        return await ctx.run(work)

    return r
