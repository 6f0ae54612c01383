"""`amc export` and `amc publish`: a built run as a versioned dataset, in a folder or on the Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amc.cli.common import ConfigOpt, SetOpt, app, console, fail, load_pipeline
from amc.errors import AmcError

TestFractionOpt = Annotated[float, typer.Option("--test-fraction", help="Share of problems in the test split.")]
RejectsOpt = Annotated[bool, typer.Option("--rejects/--no-rejects", help="Also export every stage's rejects.")]
LicenseOpt = Annotated[str, typer.Option("--license", help="License id for the card (the sources' terms apply).")]
SelfTalkOpt = Annotated[
    bool, typer.Option("--self-talk/--no-self-talk", help="Also export the self_talk config (amc.loops.selftalk).")
]


def _publication(
    cfg, test_fraction: float, rejects: bool, license_: str, repo_id: str | None = None, self_talk: bool = False
):
    from amc.publish import ExportOptions, build_publication

    try:
        options = ExportOptions(
            test_fraction=test_fraction, include_rejects=rejects, license=license_, self_talk=self_talk
        )
        return build_publication(cfg, options, repo_id=repo_id)
    except AmcError as exc:
        fail(exc)


def _warn_if_empty(pub) -> None:
    if "filtered" not in pub.splits:
        console.print(
            "[yellow]warning:[/] the filter kept no critique: this version has no filtered, sft_critic or "
            "sft_refine config (see `amc status` for the funnel)"
        )


def _report_local(result, pub) -> None:
    _warn_if_empty(pub)
    if result.no_op:
        typer.echo(
            f"up to date: {result.directory} already holds {pub.name} {pub.tag} "
            f"(fingerprint {pub.fingerprint}); nothing written"
        )
        return
    typer.echo(
        f"wrote {len(result.written)} file(s), deleted {len(result.deleted)} stale, "
        f"{len(result.unchanged)} unchanged in {result.directory}"
    )
    typer.echo(
        f"{pub.name} {pub.tag}, fingerprint {pub.fingerprint}: "
        + ", ".join(f"{c} ({'/'.join(f'{n} {s}' for s, n in splits.items())})" for c, splits in pub.splits.items())
    )


@app.command()
def export(
    config: ConfigOpt = Path("amc.yaml"),
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder; default <run_dir>/export.")] = None,
    test_fraction: TestFractionOpt = 0.1,
    rejects: RejectsOpt = False,
    license_: LicenseOpt = "mit",
    self_talk: SelfTalkOpt = False,
) -> None:
    """Lay out the built run as one dataset repository (configs, plots, card) in the Hub's folder layout."""
    from amc.publish import publish_local

    cfg = load_pipeline(config, set_)
    pub = _publication(cfg, test_fraction, rejects, license_, self_talk=self_talk)
    try:
        _report_local(publish_local(pub, out or cfg.run_path / "export"), pub)
    except AmcError as exc:
        fail(exc)


@app.command()
def publish(
    config: ConfigOpt = Path("amc.yaml"),
    set_: SetOpt = None,
    repo_id: Annotated[str | None, typer.Option("--repo-id", help="Hub dataset repository, ORG/NAME.")] = None,
    to: Annotated[Path | None, typer.Option("--to", help="Write the same layout into this folder instead.")] = None,
    revision: Annotated[str, typer.Option("--revision", help="Branch to commit to.")] = "main",
    tag: Annotated[str | None, typer.Option("--tag", help="Tag the commit, e.g. v0.1.0; never moved.")] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the repository private.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Folder only: replace other data of the same version.")
    ] = False,
    test_fraction: TestFractionOpt = 0.1,
    rejects: RejectsOpt = False,
    license_: LicenseOpt = "mit",
    self_talk: SelfTalkOpt = False,
) -> None:
    """Publish the dataset version to the Hub (one commit, then a tag) or to a folder; unchanged data is a no-op.

    The token comes from HF_TOKEN in the environment only.
    """
    import re

    from amc.publish import publish_hub, publish_local

    if (repo_id is None) == (to is None):
        fail(AmcError("give exactly one of --repo-id ORG/NAME (the Hub) or --to DIR (a folder)"))
    cfg = load_pipeline(config, set_)
    if tag is not None:
        if to is not None:
            fail(AmcError("--tag applies to the Hub; a folder records its version in amc_version.json"))
        if re.fullmatch(r"v?\d+\.\d+\.\d+.*", tag) and tag.removeprefix("v") != cfg.version:
            fail(
                AmcError(
                    f"tag {tag} does not match the dataset version {cfg.version} in {config}; "
                    f"bump `version:` there first"
                )
            )
    pub = _publication(cfg, test_fraction, rejects, license_, repo_id=repo_id, self_talk=self_talk)
    if to is not None:
        try:
            _report_local(publish_local(pub, to, force=force), pub)
        except AmcError as exc:
            fail(exc)
        return
    assert repo_id is not None
    try:
        _warn_if_empty(pub)
        result = publish_hub(pub, repo_id, revision=revision, tag=tag, private=private)
    except AmcError as exc:
        fail(exc)
    except Exception as exc:  # HTTP and network errors (after retries): show the message, not a traceback
        if type(exc).__module__.split(".")[0] in ("huggingface_hub", "httpx", "httpx2"):
            fail(exc)
        raise
    if result.no_op:
        typer.echo(
            f"up to date: {repo_id}@{revision} already holds {pub.name} {pub.tag} "
            f"(fingerprint {pub.fingerprint}); no commit made"
        )
        return
    if result.commit:
        typer.echo(
            f"committed {result.commit[:12]} to {repo_id}@{revision}: {len(result.uploaded)} file(s) changed, "
            f"{len(result.deleted)} stale deleted (fingerprint {pub.fingerprint})"
        )
    else:
        typer.echo(f"{repo_id}@{revision} already holds this content; no commit made")
    if result.tag_created:
        typer.echo(f"tagged {result.head[:12]} as {tag}")
