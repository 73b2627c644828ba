"""`rayalign registry …`: list, show (lineage), register, promote, rollback, archive, base (drift check)."""

from __future__ import annotations

import argparse
import json

HELP = "adapter registry: list, show lineage, register, promote, rollback, archive, base-model drift check"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=None, help="SQLAlchemy URL (default: sqlite file under the rayalign home)")
    p.add_argument("--tenant", default="default", help="tenant that owns the artifacts")
    sub = p.add_subparsers(dest="action", required=True, metavar="<action>")
    ls = sub.add_parser("list", help="artifacts of the tenant")
    ls.add_argument("--name")
    ls.add_argument("--stage", choices=["dev", "staging", "production", "archived"])
    show = sub.add_parser("show", help="full lineage of one version (JSON)")
    show.add_argument("name")
    show.add_argument("version", type=int)
    reg = sub.add_parser("register", help="register an adapter/model folder (reads rayalign_lineage.json)")
    reg.add_argument("path")
    reg.add_argument("--name", required=True)
    reg.add_argument("--store-root", default=None, help="copy the folder here first (local path or s3://…)")
    ds = sub.add_parser("register-dataset", help="register a dataset artifact folder (reads manifest.json)")
    ds.add_argument("path")
    pr = sub.add_parser("promote", help="move a gate-passing version to staging or production")
    pr.add_argument("name")
    pr.add_argument("version", type=int)
    pr.add_argument("--to", default="production", choices=["staging", "production"])
    pr.add_argument("--publish", action="store_true",
                    help="also point Serve's adapter folder (<home>/adapters/<tenant>/<name>) at it: served without redeploy")
    rb = sub.add_parser("rollback", help="archive the production version and restore the previous one")
    rb.add_argument("name")
    ar = sub.add_parser("archive", help="archive a version")
    ar.add_argument("name")
    ar.add_argument("version", type=int)
    res = sub.add_parser("resolve", help="print the uri and base SHA Serve would load")
    res.add_argument("name")
    res.add_argument("--alias", default="production")
    res.add_argument("--base-sha", default=None, help="refuse if the adapter's base SHA differs from this")
    base = sub.add_parser("base", help="record a base model's current weights SHA; lists adapters needing re-eval")
    base.add_argument("source", help="model source, e.g. bundled:smollm2-135m-instruct")
    base.add_argument("--sha", default=None, help="weights SHA (default: computed from the resolved model)")


def _row(v) -> str:
    gate = {True: "pass", False: "FAIL", None: "-"}[v.gate_passed]
    flag = " needs-reeval" if v.needs_reeval else ""
    return f"{v.name:<24} v{v.version:<4} {v.stage:<10} gate={gate:<4} base={v.base_sha[:12]} data={v.dataset_id}{flag}"


def run(args: argparse.Namespace) -> int:
    from app.registry import Registry

    reg = Registry(args.url, store_root=getattr(args, "store_root", None))
    t = args.tenant
    try:
        if args.action == "list":
            rows = reg.list(t, args.name, args.stage)
            print("\n".join(_row(v) for v in rows) if rows else f"(no artifacts for tenant {t})")
        elif args.action == "show":
            print(json.dumps(reg.lineage(t, args.name, args.version), indent=2, default=str))
        elif args.action == "register":
            v = reg.register_adapter(t, args.name, args.path)
            print(f"registered {v.ref} ({v.kind}, base {v.base_sha[:12]}, dataset {v.dataset_id})")
        elif args.action == "register-dataset":
            d = reg.register_dataset(t, args.path)
            print(f"registered dataset {d['id']} ({d['record_type']}, {d['rows']} rows)")
        elif args.action == "promote":
            view = reg.promote(t, args.name, args.version, args.to)
            print(f"{view.ref} -> {args.to}")
            if args.publish:
                from app.pipeline.stages import publish_adapter

                print(f"serving {t}/{args.name} from {publish_adapter(view.uri, t, args.name, view.version)}")
        elif args.action == "rollback":
            print(f"rolled back: {reg.rollback(t, args.name).ref} is production again")
        elif args.action == "archive":
            print(f"{reg.archive(t, args.name, args.version).ref} archived")
        elif args.action == "resolve":
            uri, sha = reg.resolve(t, args.name, args.alias, expected_base_sha=args.base_sha)
            print(f"{uri}\t{sha}")
        elif args.action == "base":
            sha = args.sha
            if sha is None:
                from app.models.loader import resolve_model

                sha = resolve_model(args.source).base_sha
            stale = reg.register_base(t, args.source, sha)
            print(f"{args.source}: base SHA {sha[:12]} recorded; {len(stale)} artifact(s) need re-evaluation")
            for v in stale:
                print("  " + _row(v))
    finally:
        reg.close()
    return 0
