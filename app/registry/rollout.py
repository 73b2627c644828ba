"""What Serve answers for a name: the production version, and optionally a canary version taking a traffic share.

    deploy(reg, "acme", "math", 2, share=0.1)   # v2 moves to staging and takes 10% of acme's "math" requests
    promote_canary(reg, "acme", "math")         # v2 becomes production (the old one archived), canary cleared
    rollback_canary(reg, "acme", "math")        # canary cleared: the next request is production again
    routing(reg, "acme", "math")                # Routing(production=(v, uri), canary=(v, uri, share) | None)

``deploy`` with share 1 (or None) is a plain promotion to production. The canary row lives in the registry's
database (``canary_rollouts``), one per (tenant, name), so every Serve replica reads the same routing; the row is
written in the registry's locked transaction. Serve's registry resolver (``app.serve.resolver_registry``) reads
``routing`` (cached ``refresh_s``) on requests: promote / rollback / canary changes apply without a redeploy.
Aliases (``model_aliases``) pin a fixed id to one version: a fine-tuning job's ``ft:…`` model id.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Float, Integer, String, UniqueConstraint, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from app.registry.errors import RegistryError
from app.registry.schema import Base
from app.registry.store import ArtifactView, Registry, check_name


class CanaryRollout(Base):
    """A version taking ``share`` of a tenant's requests for ``name`` (the rest go to production)."""

    __tablename__ = "canary_rollouts"
    __table_args__ = (UniqueConstraint("tenant", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    share: Mapped[float] = mapped_column(Float, nullable=False)


class ModelAlias(Base):
    """A fixed id for one version, e.g. a fine-tuning job's ``ft:<base>:<tenant>:<suffix>:<id>``."""

    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("tenant", "alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    alias: Mapped[str] = mapped_column(String(256), nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)


def fine_tuned_model_id(base: str, tenant: str, suffix: str | None, job_id: str) -> str:
    """OpenAI's ``ft:<base>:<org>:<suffix>:<id>`` (suffix empty when none; id: 12 hex of the job id)."""
    return f"ft:{base}:{tenant}:{(suffix or '').lower()}:{job_id.split('-', 1)[-1][:12]}"


def parse_fine_tuned_model(model: str) -> tuple[str, str, str, str] | None:
    """``ft:<base>:<tenant>:<suffix>:<id>`` → (base, tenant, suffix, id), or None when it is not one."""
    parts = model.split(":")
    if len(parts) != 5 or parts[0] != "ft" or not parts[1] or not parts[2] or not parts[4]:
        return None
    return parts[1], parts[2], parts[3], parts[4]


def set_alias(reg: Registry, tenant: str, alias: str, name: str, version: int) -> None:
    """Pin ``alias`` to ``name``@v``version`` (first writer wins: an alias never moves)."""
    reg.show(tenant, name, version)  # exists, or RegistryError
    ModelAlias.__table__.create(reg.engine, checkfirst=True)
    with reg._tx() as s:
        if s.scalar(select(ModelAlias).where(ModelAlias.tenant == tenant, ModelAlias.alias == alias)) is None:
            s.add(ModelAlias(tenant=tenant, alias=alias, name=name, version=int(version)))


def alias_target(reg: Registry, tenant: str, alias: str) -> tuple[str, int] | None:
    ModelAlias.__table__.create(reg.engine, checkfirst=True)
    with reg._tx() as s:
        row = s.scalar(select(ModelAlias).where(ModelAlias.tenant == tenant, ModelAlias.alias == alias))
        return None if row is None else (row.name, row.version)


def aliases(reg: Registry, tenant: str) -> list[str]:
    ModelAlias.__table__.create(reg.engine, checkfirst=True)
    with reg._tx() as s:
        return list(s.scalars(select(ModelAlias.alias).where(ModelAlias.tenant == tenant).order_by(ModelAlias.id)))


@dataclass(frozen=True)
class Routing:
    """production: (version, uri) or None; canary: (version, uri, share) or None."""

    production: tuple[int, str] | None
    canary: tuple[int, str, float] | None


def _ensure(reg: Registry) -> None:
    CanaryRollout.__table__.create(reg.engine, checkfirst=True)


def deploy(reg: Registry, tenant: str, name: str, version: int, share: float | None = None) -> ArtifactView:
    """Share None or 1: promote ``version`` to production (and clear any canary). 0 < share < 1: canary."""
    if share is None or share >= 1:
        view = reg.promote(tenant, name, version, "production")
        rollback_canary(reg, tenant, name)
        return view
    if not 0 < share < 1:
        raise RegistryError(f"traffic_share must be in (0, 1], got {share}")
    production = [v for v in reg.list(tenant, name=name, stage="production")]
    if not production:
        raise RegistryError(f"{tenant}/{name}: nothing in production; deploy a first version with share 1")
    if production[0].version == int(version):
        raise RegistryError(f"{tenant}/{name}@v{version} is already production")
    view = reg.promote(tenant, name, version, "staging")  # the gates are checked exactly as for production
    _ensure(reg)
    with reg._tx() as s:
        s.execute(delete(CanaryRollout).where(CanaryRollout.tenant == tenant, CanaryRollout.name == name))
        s.add(CanaryRollout(tenant=tenant, name=name, version=int(version), share=float(share)))
    return view


def promote_canary(reg: Registry, tenant: str, name: str) -> ArtifactView:
    """The canary version becomes production (the previous production archived as superseded)."""
    current = canary(reg, tenant, name)
    if current is None:
        raise RegistryError(f"{tenant}/{name}: no canary to promote")
    view = reg.promote(tenant, name, current[0], "production")
    rollback_canary(reg, tenant, name)
    return view


def rollback_canary(reg: Registry, tenant: str, name: str) -> bool:
    """Stop routing any share to the canary; True when there was one."""
    check_name("tenant", tenant)
    _ensure(reg)
    with reg._tx() as s:
        return s.execute(delete(CanaryRollout).where(CanaryRollout.tenant == tenant,
                                                     CanaryRollout.name == name)).rowcount > 0


def canary(reg: Registry, tenant: str, name: str) -> tuple[int, float] | None:
    _ensure(reg)
    with reg._tx() as s:
        row = s.scalar(select(CanaryRollout).where(CanaryRollout.tenant == tenant, CanaryRollout.name == name))
        return None if row is None else (row.version, row.share)


def routing(reg: Registry, tenant: str, name: str) -> Routing:
    """Production and canary of ``name`` for ``tenant`` in one read."""
    views = {v.version: v for v in reg.list(tenant, name=name)}
    prod = next((v for v in views.values() if v.stage == "production"), None)
    can = canary(reg, tenant, name)
    can_view = views.get(can[0]) if can else None
    return Routing(production=(prod.version, prod.uri) if prod else None,
                   canary=(can_view.version, can_view.uri, can[1]) if can_view and can_view.stage != "archived" else None)
