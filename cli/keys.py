"""`gradaudit keys create|list|revoke|set-webhook|webhook-secret`: API keys, managed in the database directly (as
`migrate` is), so no key is needed to make the first one; each key's default webhook and its signing secret. And
`serve`'s rule for running without keys."""

from __future__ import annotations

import ipaddress

import click
from pydantic import ValidationError

from gradaudit.settings import Settings, load_settings


@click.group()
@click.option("--data-dir", type=click.Path(), help="where the embedded SQLite lives (default: ./gradaudit-data)")
@click.pass_context
def keys(ctx: click.Context, data_dir: str | None) -> None:
    """Create, list and revoke API keys (DATABASE_URL, else the SQLite file in the data dir)."""
    ctx.obj = data_dir


def _settings(ctx: click.Context) -> Settings:
    try:
        return load_settings(**({"data_dir": ctx.obj} if ctx.obj else {}))
    except ValidationError as invalid:
        raise click.UsageError(f"invalid configuration: {invalid}") from None


def _sessions(ctx: click.Context):
    from models.database import make_engine, make_session_factory
    from models.migrate import upgrade_database

    settings = _settings(ctx)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_database(settings.sqlalchemy_url)  # idempotent; a fresh embedded default has no tables yet
    return make_session_factory(make_engine(settings.sqlalchemy_url))


@keys.command()
@click.option("--name", required=True, help="who or what holds the key, e.g. ci")
@click.option("--admin", is_flag=True, help="the key sees every client's audits")
@click.option("--webhook-url", metavar="URL",
              help="where this key's finished audits are posted, signed, unless an audit's options.webhook_url "
                   "names another (needs GRADAUDIT_WEBHOOK_SECRET; checked as the API checks webhook_url)")
@click.pass_context
def create(ctx: click.Context, name: str, admin: bool, webhook_url: str | None) -> None:
    """Create a key and print it, once: only its hash is stored."""
    from models.api_keys import create_key

    if webhook_url is not None:
        _check_webhook(_settings(ctx), webhook_url)
    with _sessions(ctx)() as db_session:
        key, secret = create_key(db_session=db_session, name=name, admin=admin, webhook_url=webhook_url)
    kind = "admin key" if admin else "key"
    click.echo(f"created {kind} {key.id} ({name}); it is shown only now, store it:", err=True)
    if _settings(ctx).webhook_secret:
        click.echo(f"its webhooks are signed with the secret `gradaudit keys webhook-secret {key.id}` prints", err=True)
    click.echo(secret)


def _check_webhook(settings: Settings, url: str) -> None:
    from gradaudit.webhooks import WebhookRefused, webhook_target

    if not settings.webhook_secret:
        raise click.UsageError("--webhook-url needs GRADAUDIT_WEBHOOK_SECRET: without it the service sends no webhooks")
    try:
        webhook_target(url, allow_private=settings.webhook_allow_private)
    except WebhookRefused as refused:
        raise click.UsageError(f"--webhook-url: {refused.detail}") from None


@keys.command(name="set-webhook")
@click.argument("reference")
@click.argument("url", required=False)
@click.pass_context
def set_webhook(ctx: click.Context, reference: str, url: str | None) -> None:
    """Set (or, without URL, clear) the default webhook URL of the key with this id or prefix."""
    from models.api_keys import set_webhook_url

    if url is not None:
        _check_webhook(_settings(ctx), url)
    with _sessions(ctx)() as db_session:
        key = _one_key(db_session, reference)
        set_webhook_url(db_session=db_session, key_id=key.id, url=url)
    click.echo(f"{key.id} ({key.name}): " + (f"webhook {url}" if url else "no webhook"))


@keys.command(name="webhook-secret")
@click.argument("reference", required=False)
@click.pass_context
def webhook_secret(ctx: click.Context, reference: str | None) -> None:
    """Print the secret that signs the webhooks of the key with this id or prefix (none: of the audits made while
    auth was off). It is derived from GRADAUDIT_WEBHOOK_SECRET, never stored."""
    from gradaudit.webhooks import signing_secret

    settings = _settings(ctx)
    if not settings.webhook_secret:
        raise click.ClickException("GRADAUDIT_WEBHOOK_SECRET is not set: this service signs and sends no webhooks")
    key_id = None
    if reference is not None:
        with _sessions(ctx)() as db_session:
            key_id = _one_key(db_session, reference).id
    click.echo(signing_secret(settings.webhook_secret, key_id))


def _one_key(db_session, reference: str):
    from models.api_keys import matching_keys

    found = matching_keys(db_session=db_session, reference=reference)
    if len(found) != 1:
        what = "no key" if not found else f"{len(found)} keys"
        raise click.ClickException(f"{what} with id or prefix {reference!r}; see gradaudit keys list")
    return found[0]


@keys.command(name="list")
@click.pass_context
def list_command(ctx: click.Context) -> None:
    """List the keys: id, prefix, name, admin, created, revoked, default webhook."""
    from models.api_keys import list_keys

    with _sessions(ctx)() as db_session:
        rows = list_keys(db_session=db_session)
    click.echo("id\tprefix\tname\tadmin\tcreated\trevoked\twebhook")
    for key in rows:
        revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "-"
        click.echo(f"{key.id}\t{key.prefix}\t{key.name}\t{'yes' if key.admin else 'no'}\t"
                   f"{key.created_at.isoformat(timespec='seconds')}\t{revoked}\t{key.webhook_url or '-'}")


@keys.command()
@click.argument("reference")
@click.pass_context
def revoke(ctx: click.Context, reference: str) -> None:
    """Revoke the key with this id or prefix: requests with it get 401 from now on."""
    from models.api_keys import revoke_key

    with _sessions(ctx)() as db_session:
        key = _one_key(db_session, reference)
        revoked = revoke_key(db_session=db_session, key_id=key.id)
    click.echo(f"{'revoked' if revoked else 'already revoked:'} {key.id} ({key.name})")


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only; a name other than localhost counts as not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve_auth(settings: Settings, host: str) -> tuple[Settings, str | None]:
    """The settings `serve` runs with and the line it says at start: auth stays off only on loopback."""
    loopback = is_loopback(host)
    if settings.auth is False and not loopback:
        raise click.UsageError(f"refusing to serve on {host} with GRADAUDIT_AUTH=off: anyone who reaches it would "
                               "read every audit; bind to 127.0.0.1 or turn auth on (gradaudit keys create)")
    if settings.auth is None and loopback and settings.env != "production":
        settings = settings.model_copy(update={"auth": False})
    if settings.auth_required:
        return settings, "API keys required (Authorization: Bearer <key>); create one with: gradaudit keys create"
    return settings, (f"auth is OFF: no API key needed, because {host} is loopback (this machine only); "
                      "set GRADAUDIT_AUTH=on to require keys")
