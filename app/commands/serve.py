"""`rayalign serve`: run the multi-LoRA OpenAI-compatible endpoint, write demo adapters, or emit a `serve deploy` file."""

from __future__ import annotations

import argparse

HELP = "serve base + LoRA adapters behind an OpenAI-compatible API on Ray Serve (vLLM or HF/peft engine)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="serve YAML (configs/serve/…)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. engine=hf http.port=8080")
    p.add_argument("--deploy-config", metavar="OUT", help="write a `serve deploy` YAML for this config to OUT and exit")
    p.add_argument(
        "--demo-adapters", type=int, default=0, metavar="N",
        help="first write N random LoRA adapters (demo-0..) for the first tenant into the adapter root",
    )


def run(args: argparse.Namespace) -> int:
    import yaml

    from app.config.loader import load_config
    from app.config.serve import ServeConfig

    cfg = load_config(args.config, ServeConfig, args.overrides)
    if args.deploy_config:
        from app.serve.app import serve_deploy_config

        body = serve_deploy_config(cfg, args.config)
        if args.overrides:
            body["applications"][0]["args"]["overrides"] = list(args.overrides)
        with open(args.deploy_config, "w", encoding="utf-8") as fh:
            yaml.safe_dump(body, fh, sort_keys=False)
        print(f"wrote {args.deploy_config}: serve deploy {args.deploy_config}")
        return 0
    if args.demo_adapters:
        from app.config.paths import rayalign_home
        from app.models.loader import resolve_model
        from app.serve.random_adapter import write_demo_adapters

        tenant = cfg.tenants[0].name if cfg.tenants else "default"
        root = cfg.adapters.root or str(rayalign_home() / "adapters")
        for i, uri in enumerate(write_demo_adapters(resolve_model(cfg.model).path, root, tenant, args.demo_adapters,
                                                    base_source=cfg.model.source)):
            print(f"adapter {tenant}/demo-{i}: {uri}")
    from app.serve.app import run_app

    run_app(cfg, blocking=True)
    return 0
