"""`lintas gallery ...`: the node's fingerprint gallery, from the command line.

The commands open the node's database as `lintas node` does (--data-dir, or --db /
LINTAS_NODE_DB). Enrolment checks every print (NFIQ 2 quality, enough minutiae) and says
why one is refused; images are never stored, only ISO/IEC 19794-2 templates.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lintas.cli.common import console, fail, friendly
from lintas.cli.node import DEFAULT_DIR, DataDir, DbOpt, open_node_database

if TYPE_CHECKING:
    from lintas.node.gallery import Gallery

app = typer.Typer(help="Enrol, list, delete and search the node's fingerprint gallery.",
                  no_args_is_help=True)

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".bmp", ".jpg", ".jpeg", ".wsq")
_FLAT = re.compile(r"(?P<person>.+)_(?P<impression>[0-9]+)")
_NESTED = re.compile(r"(?P<position>[0-9]{1,2})_(?P<impression>[0-9]+)")
_TYPE2_TAG = re.compile(r"2\.[0-9]{3,4}")

F = TypeVar("F", bound=Callable[..., Any])

Ppi = Annotated[float | None, typer.Option(
    "--ppi", help="Resolution of the images in pixels per inch, when their files do not "
                  "carry a plausible one (FVC2004 DB3 is 512). Default: the file's, else 500.")]
Replace = Annotated[bool, typer.Option(
    "--replace", help="Replace the fingers (and label) of persons already enrolled; "
                      "without it they are refused.")]
Strict = Annotated[bool, typer.Option(
    "--strict", help="Refuse a whole person when one of their prints is rejected (default: "
                     "enrol the acceptable prints and report the others).")]


def _error(message: str, code: int = 2) -> NoReturn:
    fail(message, code)
    raise AssertionError("fail() raises typer.Exit")


def _gallery_errors(func: F) -> F:
    """The biometric and gallery errors as one clear line (the rest: `friendly`).

    The biometric stack (numpy, Pillow, numba) is imported only when a gallery command
    runs, so that every other `lintas` command (a node or hub starting) stays quick."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from lintas.biometrics.formats import TemplateFormatError
        from lintas.biometrics.images import ImageError
        from lintas.biometrics.matching import MatchError
        from lintas.biometrics.measure import MeasureError
        from lintas.node.gallery import GalleryError

        try:
            return func(*args, **kwargs)
        except (GalleryError, ImageError, TemplateFormatError, MatchError,
                MeasureError) as exc:
            _error(str(exc))

    return wrapper  # type: ignore[return-value]


def _open(data_dir: Path, db: str | None) -> Gallery:
    from lintas.node.gallery import Gallery

    return Gallery(open_node_database(data_dir, db))


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


@dataclass
class _Outcome:
    persons: int = 0
    fingers: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


def _summary(outcome: _Outcome, files: int) -> None:
    table = Table("", "count", title="Enrolment summary")
    table.add_row("files found", str(files))
    table.add_row("persons enrolled", str(outcome.persons))
    table.add_row("fingers enrolled", str(outcome.fingers))
    table.add_row("prints rejected", str(len(outcome.rejected)))
    console.print(table)
    if outcome.rejected:
        rejected = Table("file", "reason", title="Rejected prints")
        for name, reason in outcome.rejected:
            rejected.add_row(name, reason)
        console.print(rejected)


def _enrol(gallery: Gallery, outcome: _Outcome, reference: str, fingers: list[tuple[int, Any]],
           names: list[str], replace: bool, strict: bool) -> None:
    """Enrol one person; their files' rejections go into `outcome`."""
    from lintas.node.gallery import DuplicateReference

    try:
        result = gallery.enrol(reference, fingers, replace=replace, partial=not strict)
    except DuplicateReference:
        outcome.rejected += [(n, f"person {reference!r} is already enrolled (--replace to "
                                 "replace)") for n in names]
        return
    for rejection in result.rejected:
        outcome.rejected.append((names[rejection.index], rejection.reason))
    if result.enrolled:
        outcome.persons += 1
        outcome.fingers += len(result.fingers)
    elif not result.rejected:
        outcome.rejected += [(n, "not enrolled") for n in names]
    elif strict and len(result.rejected) < len(names):
        refused = {r.index for r in result.rejected}
        outcome.rejected += [(n, "not enrolled: another print of this person was rejected "
                                 "(--strict)") for i, n in enumerate(names) if i not in refused]


def _finish(outcome: _Outcome, files: int) -> None:
    _summary(outcome, files)
    if outcome.rejected:
        raise typer.Exit(1)


def _folder_files(folder: Path, pattern: str,
                  position: int) -> tuple[dict[str, list[tuple[int, int, Path]]],
                                          list[tuple[str, str]], int]:
    """Persons -> [(position, impression, file)], files refused by name, files seen."""
    persons: dict[str, list[tuple[int, int, Path]]] = defaultdict(list)
    refused: list[tuple[str, str]] = []
    try:
        files = sorted(p for p in folder.glob(pattern)
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    except ValueError as exc:  # e.g. a non-relative or malformed pattern
        _error(f"--pattern {pattern!r}: {exc}")
    for path in files:
        rel = path.relative_to(folder)
        if len(rel.parts) == 1 and (m := _FLAT.fullmatch(path.stem)):
            persons[m["person"]].append((position, int(m["impression"]), path))
        elif len(rel.parts) == 2 and (m := _NESTED.fullmatch(path.stem)) \
                and 1 <= int(m["position"]) <= 10:
            persons[rel.parts[0]].append((int(m["position"]), int(m["impression"]), path))
        else:
            refused.append((str(rel), "the name follows neither <person>_<impression>.<ext> "
                                      "nor <person>/<position 1-10>_<impression>.<ext>"))
    for items in persons.values():
        items.sort()
    return persons, refused, len(files)


@app.command("enrol-folder")
@friendly
@_gallery_errors
def enrol_folder(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False, dir_okay=True,
                                           metavar="FOLDER",
                                           help="Folder of fingerprint images.")],
    ppi: Ppi = None,
    pattern: Annotated[str, typer.Option(
        help="Which files to take (a glob relative to FOLDER), e.g. '10[1-5]_[12].tif'.")]
    = "**/*",
    position: Annotated[int, typer.Option(
        min=1, max=10, help="Finger position of files named <person>_<impression> (their "
                            "name does not say): 1 right thumb ... 10 left little.")] = 1,
    replace: Replace = False,
    strict: Strict = False,
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
) -> None:
    """Enrol every person found in a folder of images (PNG, TIFF, BMP, JPEG, WSQ).

    Two layouts are understood, and may be mixed:

    - FOLDER/<person>_<impression>.<ext> (FVC style, e.g. 101_2.tif: person 101, second
      impression); the finger position is --position (default 1).

    - FOLDER/<person>/<position>_<impression>.<ext> (e.g. ID-123/2_1.png: person ID-123,
      finger 2 = right index, first impression).

    <person> becomes the gallery reference. Each print is quality-checked (NFIQ 2) and
    must show at least 8 minutiae; the summary lists every rejected file with the reason.
    Exit status 0 when every print was enrolled, 1 when some were rejected.

    Example: lintas gallery enrol-folder fvc2004/DB3_B --ppi 512 --pattern '*_[12].tif'
    """
    from lintas.biometrics.images import ImageError, load_image

    gallery = _open(data_dir, db)
    persons, refused, files = _folder_files(folder, pattern, position)
    if not files:
        _error(f"FOLDER: no image files ({', '.join(IMAGE_SUFFIXES)}) matching {pattern!r} "
             f"in {folder}")
    outcome = _Outcome(rejected=list(refused))
    with _progress() as progress:
        task = progress.add_task("enrolling", total=files)
        for person, items in persons.items():
            progress.update(task, description=f"enrolling {person}")
            fingers, names = [], []
            for finger, _, path in items:
                name = str(path.relative_to(folder))
                try:
                    fingers.append((finger, load_image(path.read_bytes(), ppi)))
                    names.append(name)
                except (ImageError, OSError) as exc:
                    outcome.rejected.append((name, str(exc)))
            if fingers:
                _enrol(gallery, outcome, person, fingers, names, replace, strict)
            progress.advance(task, len(items))
        progress.advance(task, len(refused))
        progress.update(task, description="enrolled")
    _finish(outcome, files)


@app.command("enrol-nist")
@friendly
@_gallery_errors
def enrol_nist(
    files: Annotated[list[Path], typer.Argument(
        exists=True, dir_okay=False, metavar="FILE...",
        help="ANSI/NIST-ITL 1-2011 transaction files (.an2, .eft).")],
    reference_field: Annotated[str | None, typer.Option(
        "--reference-field", help="The Type-2 field holding the person's reference, e.g. "
                                  "2.010. Default: the transaction control number (1.009 TCN).")]
    = None,
    replace: Replace = False,
    strict: Strict = False,
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
) -> None:
    """Enrol one person from each ANSI/NIST-ITL transaction.

    Fingers come from the Type-14 or Type-4 images (quality-checked, then extracted
    here), or from the Type-9 minutiae of a finger that has no image. Each file is one
    person; the summary lists every rejected file or finger with the reason. Exit status
    0 when every finger was enrolled, 1 when some were rejected.

    Example: lintas gallery enrol-nist card-0001.an2 card-0002.an2 --reference-field 2.010
    """
    from lintas.biometrics.formats.ansi_nist import AnsiNistError, read_transaction
    from lintas.node.gallery import FINGER_NAMES

    if reference_field is not None and not _TYPE2_TAG.fullmatch(reference_field):
        _error(f"--reference-field: {reference_field!r} is not a Type-2 field tag like 2.010")
    gallery = _open(data_dir, db)
    outcome = _Outcome()
    with _progress() as progress:
        task = progress.add_task("enrolling", total=len(files))
        for path in files:
            progress.update(task, description=f"enrolling {path.name}")
            try:
                tx = read_transaction(path.read_bytes())
            except (AnsiNistError, OSError) as exc:
                outcome.rejected.append((path.name, str(exc)))
                progress.advance(task)
                continue
            reference = tx.tcn if reference_field is None else tx.type2.get(reference_field)
            if not reference:
                outcome.rejected.append((path.name, f"no Type-2 field {reference_field}: "
                                                    "the person's reference is unknown"))
                progress.advance(task)
                continue
            fingers: list[tuple[int, Any]] = []
            names = []
            for finger in tx.fingers:
                sample = finger.image if finger.image is not None else finger.minutiae
                fingers.append((finger.position, sample))
                source = "image" if finger.image is not None else "Type-9 minutiae"
                names.append(f"{path.name} finger {finger.position} "
                             f"({FINGER_NAMES[finger.position]}, {source})")
            try:
                _enrol(gallery, outcome, reference.strip(), fingers, names, replace, strict)
            except ValueError as exc:  # a reference the gallery cannot take
                outcome.rejected.append((path.name, str(exc)))
            progress.advance(task)
        progress.update(task, description="enrolled")
    _finish(outcome, len(files))


@app.command("list")
@friendly
@_gallery_errors
def list_persons(
    limit: Annotated[int, typer.Option(min=1, help="At most this many persons.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many first.")] = 0,
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
) -> None:
    """List enrolled persons by reference, with how many impressions each has.

    Example: lintas gallery list --limit 20
    """
    gallery = _open(data_dir, db)
    persons = gallery.persons(limit, offset)
    table = Table("reference", "label", "impressions", "enrolled", "updated",
                  title=f"Gallery: {gallery.count()} persons, {gallery.finger_count()} "
                        "impressions")
    for p in persons:
        table.add_row(p.reference, p.label or "", str(p.fingers), _when(p.created_at),
                      _when(p.updated_at))
    console.print(table)


@app.command()
@friendly
@_gallery_errors
def show(
    reference: Annotated[str, typer.Argument(metavar="REFERENCE",
                                             help="The person's reference.")],
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
) -> None:
    """Show one person's enrolled fingers (position, impression, NFIQ 2, minutiae).

    Example: lintas gallery show ID-123
    """
    from lintas.node.gallery import finger_name

    person = _open(data_dir, db).get(reference)
    if person is None:
        _error(f"REFERENCE: no person {reference!r} in the gallery")
    table = Table("finger", "impression", "NFIQ 2", "minutiae", "enrolled",
                  title=f"{person.reference}" + (f" ({person.label})" if person.label else ""))
    for f in person.fingers:
        table.add_row(finger_name(f.position), str(f.impression),
                      "—" if f.nfiq2 is None else str(f.nfiq2), str(f.minutiae_count),
                      _when(f.created_at))
    console.print(table)


@app.command()
@friendly
@_gallery_errors
def delete(
    reference: Annotated[str, typer.Argument(metavar="REFERENCE",
                                             help="The person's reference.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
) -> None:
    """Delete a person and all their fingers from the gallery.

    Example: lintas gallery delete ID-123 --yes
    """
    gallery = _open(data_dir, db)
    person = gallery.get(reference)
    if person is None:
        _error(f"REFERENCE: no person {reference!r} in the gallery")
    if not yes and not typer.confirm(f"Delete {reference!r} and its {len(person.fingers)} "
                                     "enrolled impressions?"):
        _error("not deleted", code=1)
    removed = gallery.delete(reference)
    console.print(f"[green]deleted[/] {reference} ({removed} impressions)")


@app.command()
@friendly
@_gallery_errors
def search(
    images: Annotated[list[Path], typer.Argument(
        exists=True, dir_okay=False, metavar="IMAGE...", help="Probe images, one per finger.")],
    position: Annotated[list[int] | None, typer.Option(
        "--position", min=1, max=10,
        help="Finger position of each image, in the same order (once per image); "
             "default: 1 for a single image.")] = None,
    ppi: Ppi = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many candidates.")]
    = 10,
    max_fmr: Annotated[float | None, typer.Option(
        "--max-fmr", min=0, max=1, help="Only candidates at or below this false match rate.")]
    = None,
    max_fpir: Annotated[float | None, typer.Option(
        "--max-fpir", min=0, max=1,
        help="Only candidates at or below this search rate (FPIR; the node's checks report "
             "a hit at 0.001).")]
    = None,
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
) -> None:
    """Search the gallery with one or more fingers of a person; candidates best first.

    A candidate's FMR is how often an impostor would compare as well with one enrolled
    person (calibrated on FVC2004 impostors; several fingers fused). Its FPIR is the
    search's rate: searching N persons, about N x FMR impostors are expected at that
    level, so FPIR = N x FMR (at most 1) is how often a search for someone not enrolled
    turns up a candidate this strong. The node's checks report a hit at FPIR 0.001.

    Example: lintas gallery search probe-thumb.png probe-index.png --position 1
    --position 2
    """
    from lintas.biometrics.images import load_image

    positions = list(position or [])
    if not positions and len(images) == 1:
        positions = [1]
    if len(positions) != len(images):
        _error(f"--position: {len(images)} images need {len(images)} --position values (one "
             f"per image, in order), not {len(positions)}")
    if max_fmr == 0:
        _error("--max-fmr: must be above 0")
    if max_fpir == 0:
        _error("--max-fpir: must be above 0")
    gallery = _open(data_dir, db)
    samples = []
    for path, finger in zip(images, positions, strict=True):
        try:
            samples.append((finger, load_image(path.read_bytes(), ppi)))
        except ValueError as exc:
            _error(f"IMAGE {path}: {exc}")
    probe, rejected = gallery.prepare_probe(samples)
    for r in rejected:
        console.print(f"[yellow]not used:[/] {images[r.index]}: {r}")
    if not probe:
        _error("IMAGE: no usable probe finger (see above)")
    candidates = gallery.search(probe, limit=limit, max_fmr=max_fmr, max_fpir=max_fpir)
    size = gallery.count()
    if not candidates:
        console.print(f"no candidate among {size} enrolled persons")
        return
    table = Table("#", "reference", "FMR", "FPIR", "evidence",
                  "fingers (score, FMR, impression)",
                  title=f"Candidates among {size} enrolled persons")
    for rank, c in enumerate(candidates, start=1):
        detail = "; ".join(f"{p}: {s.score:.3f}, {s.fmr:.1e}, #{s.impression}"
                           for p, s in sorted(c.fingers.items()))
        table.add_row(str(rank), c.reference, f"{c.fmr:.1e}", f"{c.fpir:.1e}",
                      f"{c.evidence:.1f}", detail)
    console.print(table)


calibration_app = typer.Typer(
    help="Show or change the tables that turn match scores into false match rates.",
    no_args_is_help=True)
app.add_typer(calibration_app, name="calibration")

MAX_CALIBRATION_BYTES = 2_000_000
SHOWN_RATES = (1e-2, 1e-3, 1e-4, 1e-6, 1e-8)


def _read_table(option: str, path: Path) -> Any:
    """A calibration table file, checked; errors name the option, the file and the field."""
    from lintas.biometrics.matching import MatchError, calibration_from_json

    if path.stat().st_size > MAX_CALIBRATION_BYTES:
        _error(f"{option} {path}: larger than {MAX_CALIBRATION_BYTES:,} bytes; not a "
               "calibration table")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _error(f"{option} {path}: not JSON ({exc})")
    try:
        return calibration_from_json(data, "table")
    except MatchError as exc:
        _error(f"{option} {path}: {exc}")


@calibration_app.command("show")
@friendly
@_gallery_errors
def calibration_show(
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print both tables as JSON (what `set` reads, one table a file).")]
    = False,
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
) -> None:
    """Show the calibration this node's searches use: its own, or the shipped one.

    For each table: what it was measured on, the thresholds at a few false match
    rates, and the fitted tail that gives the rarer rates.

    Example: lintas gallery calibration show
    """
    gallery = _open(data_dir, db)
    tables = gallery.calibrations()
    if as_json:
        typer.echo(json.dumps(tables.as_json(), indent=1))
        return
    own = gallery.own_calibrations()
    console.print("this node's own calibration" if own else
                  "the shipped calibration (FVC2004 DB1_B-DB4_B); a node whose sensors "
                  "differ should set its own")
    _show_tables(tables)


def _show_tables(tables: Any) -> None:
    """Thresholds at a few rates, and what each table was measured on."""
    named = (("single view", tables.single), ("phases", tables.phased))
    table = Table("FMR", *(name for name, _ in named), title="Score threshold by false match rate")
    for rate in SHOWN_RATES:
        table.add_row(f"{rate:g}", *(f"{t.threshold(rate):.3g}" if rate >= t.rarest else "-"
                                     for _, t in named))
    console.print(table)
    for name, t in named:
        tail = t.tail
        console.print(f"[bold]{name}[/]: {t.source}")
        console.print(f"  counted on {t.impostors:,} impostor comparisons; " + (
            f"no rate below 1/{t.impostors:,} is claimed" if tail is None else
            f"rarer rates from a power-law tail from score {tail.score:.3g} (FMR "
            f"{tail.fmr:.2g}), alpha {tail.alpha:.2f}, never below {tail.floor:.0e}"))


def _ppi_of(values: list[str]) -> Callable[[str], float | None]:
    """--ppi values, "N" for every set or "SET=N" for one, as a function of the set."""
    from lintas.biometrics.images import MAX_PPI, MIN_PPI

    default: float | None = None
    by_set: dict[str, float] = {}
    for value in values:
        name, _, number = value.rpartition("=")
        try:
            ppi = float(number)
        except ValueError:
            _error(f"--ppi: {value!r} is not N or SET=N (e.g. 500 or DB3_B=512)")
        if not MIN_PPI <= ppi <= MAX_PPI:
            _error(f"--ppi: {value!r}: a resolution of {MIN_PPI:.0f}..{MAX_PPI:.0f} ppi")
        if name:
            by_set[name] = ppi
        else:
            default = ppi
    return lambda name: by_set.get(name, default)


@calibration_app.command("measure")
@friendly
@_gallery_errors
def calibration_measure(
    folder: Annotated[Path, typer.Argument(
        metavar="DIR", exists=True, file_okay=False,
        help="Images named <finger>_<impression>.<ext> from the node's own sensors, or "
             "sub-folders of them (one a sensor; never compared with each other).")],
    ppi: Annotated[list[str] | None, typer.Option(
        "--ppi", help="Resolution where the files carry no plausible one: N for every "
                      "set, or SET=N for one (repeatable). Default: the file's, else 500.")]
    = None,
    use: Annotated[bool, typer.Option(
        "--set", help="Make the measured tables this node's calibration (audited).")]
    = False,
    single_out: Annotated[Path | None, typer.Option(
        "--single-out", dir_okay=False, help="Also write the single-view table here.")]
    = None,
    phased_out: Annotated[Path | None, typer.Option(
        "--phased-out", dir_okay=False, help="Also write the phased table here.")] = None,
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
) -> None:
    """Measure calibration tables on the node's own prints (and with --set, use them).

    Every image is extracted at the four grid phases; every pair of impressions of
    different fingers within a set is an impostor comparison. At least 100 are needed,
    and 2,000 for the fitted tail that gives rates rarer than the counts (about 10
    fingers with 8 impressions each, as an FVC set, give 2,880). The command shows what
    the node's own genuine pairs reach at FMR 1 % and 0.1 %.

    Example: lintas gallery calibration measure /data/own-sensor --ppi 500 --set
    """
    from lintas.biometrics.matching import TAIL_MIN_IMPOSTORS
    from lintas.biometrics.measure import extract, find_sets, measure

    sets = find_sets(folder)
    gallery = _open(data_dir, db) if use else None
    with _progress() as bar:
        task = bar.add_task("extracting", total=sum(len(f) for _, f in sets))
        impressions, failed = extract(sets, _ppi_of(ppi or []), lambda done, total:
                                      bar.update(task, completed=done, total=total))
        task = bar.add_task("comparing", total=None)
        result = measure(impressions, failed, describe=folder.name,
                         progress=lambda done, total: bar.update(task, completed=done,
                                                                 total=total))
    for name, reason in result.failed:
        console.print(f"[yellow]not used:[/] {name}: {reason}")
    console.print(f"{result.images} images, {len(result.failed)} not used; "
                  f"{result.impostors:,} impostor and {result.genuine:,} genuine comparisons")
    for rate, fnmr in result.fnmr_at_fmr.items():
        console.print(f"  own genuine pairs: FNMR {fnmr:.2%} at FMR {rate:.1%} (phases)")
    _show_tables(result.tables)
    if result.tables.phased.tail is None:
        console.print(f"[yellow]no fitted tail[/]: fewer than {TAIL_MIN_IMPOSTORS:,} impostor "
                      f"comparisons; no rate below 1/{result.impostors:,} is claimed")
    for option, path, table in (("--single-out", single_out, result.tables.single),
                                ("--phased-out", phased_out, result.tables.phased)):
        if path is not None:
            _write_file(path, (json.dumps(table.as_json()) + "\n").encode(), option)
            console.print(f"wrote {path}")
    if gallery is not None:
        from lintas.cli.users import local_operator

        gallery.set_calibrations(result.tables, local_operator())
        console.print("[green]calibration set[/]: this node's searches use the measured "
                      "tables from now on")
    else:
        console.print("measured only; run again with --set to use these tables")


def _write_file(path: Path, data: bytes, name: str) -> None:
    """Write `data` whole or not at all (a temporary file renamed into place); an error
    names the option (`name`) and the path."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        _error(f"{name} {path}: cannot write ({exc.strerror})")


@calibration_app.command("set")
@friendly
@_gallery_errors
def calibration_set(
    single: Annotated[Path, typer.Option(
        "--single", exists=True, dir_okay=False, metavar="FILE",
        help="The single-view table, JSON (the benchmark's --calibration-out).")],
    phased: Annotated[Path, typer.Option(
        "--phased", exists=True, dir_okay=False, metavar="FILE",
        help="The phased table, JSON (the benchmark's --phase-calibration-out).")],
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
) -> None:
    """Use this node's own calibration tables, measured on its own sensors' impostors.

    Both tables are checked before anything is stored, and the change is audited. It
    applies to every search from then on, a serving node's included. Write the tables
    with `benchmarks/fingerprint.py --data DIR --sizes 0 --calibration-out single.json
    --phase-calibration-out phased.json`, DIR holding the node's own FVC-style sets.

    Example: lintas gallery calibration set --single single.json --phased phased.json
    """
    from lintas.biometrics.matching import Calibrations
    from lintas.cli.users import local_operator

    tables = Calibrations(_read_table("--single", single), _read_table("--phased", phased))
    _open(data_dir, db).set_calibrations(tables, local_operator())
    console.print(f"[green]calibration set[/]: single view from {tables.single.source!r}; "
                  f"phases from {tables.phased.source!r}")


@calibration_app.command("reset")
@friendly
@_gallery_errors
def calibration_reset(data_dir: DataDir = DEFAULT_DIR, db: DbOpt = None) -> None:
    """Go back to the shipped calibration tables (audited).

    Example: lintas gallery calibration reset
    """
    from lintas.cli.users import local_operator

    _open(data_dir, db).set_calibrations(None, local_operator())
    console.print("[green]calibration reset[/] to the shipped tables")


@app.command()
@friendly
@_gallery_errors
def explain(
    image: Annotated[Path, typer.Argument(
        exists=True, dir_okay=False, metavar="IMAGE", help="The probe image of one finger.")],
    reference: Annotated[str, typer.Argument(
        metavar="REFERENCE", help="The enrolled person to compare it with.")],
    out: Annotated[Path, typer.Option(
        "--out", dir_okay=False, help="Where to write the side-by-side drawing (PNG).")],
    position: Annotated[int, typer.Option(
        "--position", min=1, max=10, help="The probe's finger position.")] = 1,
    ppi: Ppi = None,
    data_dir: DataDir = DEFAULT_DIR,
    db: DbOpt = None,
) -> None:
    """Draw a probe beside an enrolled person's finger, with the minutiae that pair up.

    The probe is compared with each enrolled impression of that finger, as a search
    would; the best is drawn beside it (its minutiae only: images are never stored),
    with a line for each pair of minutiae that make the score, and the pairs are listed.

    Example: lintas gallery explain probe.png ID-123 --position 2 --out review.png
    """
    from lintas.biometrics.images import load_image
    from lintas.biometrics.matching import prepare
    from lintas.biometrics.render import minutiae_of, side_by_side
    from lintas.node.gallery import finger_name

    gallery = _open(data_dir, db)
    person = gallery.get(reference)
    if person is None:
        _error(f"REFERENCE: no person {reference!r} in the gallery")
    if not any(f.position == position for f in person.fingers):
        enrolled = sorted({finger_name(f.position) for f in person.fingers})
        _error(f"--position: {reference} has no {finger_name(position)} enrolled "
               f"(enrolled: {', '.join(enrolled)})")
    try:
        sample = load_image(image.read_bytes(), ppi)
    except ValueError as exc:
        _error(f"IMAGE {image}: {exc}")
    probe, rejected = gallery.prepare_probe([(position, sample)])
    if not probe:
        _error(f"IMAGE {image}: {rejected[0].reason}")
    (candidate,) = gallery.search(probe, limit=1, within=[reference])
    scored = candidate.fingers[position]
    stored = gallery.stored_template(scored.finger_id)
    comparison = scored.comparison
    caption = (f"{image.name} | {reference}, {finger_name(position)}, impression "
               f"{scored.impression} | score {comparison.score:.3g}, FMR "
               f"{comparison.fmr:.2g}, {len(comparison.pairs)} pairs")
    png = side_by_side(probe[position][0], prepare(stored.views[0]), comparison,
                       sample.pixels, (stored.width, stored.height), caption)
    px, py, pt = minutiae_of(probe[position][0])
    reference_view = stored.views[0]
    table = Table("#", "probe minutia (x, y, angle)", "reference minutia (x, y, angle)",
                  "share", title=caption)
    total = sum(p.contribution for p in comparison.pairs) or 1.0
    for n, pair in enumerate(sorted(comparison.pairs, key=lambda p: -p.contribution), 1):
        i = pair.probe_index
        angle = math.degrees(pt[i]) % 360
        m = reference_view.minutiae[pair.reference_index]
        table.add_row(str(n), f"{px[i]:.0f}, {py[i]:.0f}, {angle:.0f}°",
                      f"{m.x}, {m.y}, {m.angle:.0f}°", f"{pair.contribution / total:.0%}")
    console.print(table)
    _write_file(out, png, "--out")
    console.print(f"wrote {out}")


def _when(moment: Any) -> str:
    return str(moment.strftime("%Y-%m-%d %H:%M"))

