"""``viewal label-studio serve``: a loop run as a Label Studio ML backend (:mod:`viewal.labelling.lsbackend`).

::

    viewal label-studio serve --run RUN --port 9090 --token SECRET \\
        [--ls-url http://127.0.0.1:8080 --ls-api-key KEY --project 1]

Label Studio gets pre-annotations from it (``/predict``), each saved annotation goes into the run's ledger at
once (``/webhook``), and, with ``--ls-url``, the next cycle's tasks are pushed into the project when a cycle
is answered. Stop it with Ctrl-C or SIGTERM. See docs/labelling.md.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

__all__ = ["configure_parser", "run", "TOKEN_ENV", "API_KEY_ENV"]

TOKEN_ENV = "VIEWAL_BACKEND_TOKEN"
API_KEY_ENV = "LABEL_STUDIO_API_KEY"


def configure_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="<action>", required=True)
    sv = sub.add_parser("serve", help="serve a loop run to Label Studio: predictions, answers into the ledger, "
                                      "the next cycle's tasks", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sv.add_argument("--run", required=True, type=Path, help="run folder of 'viewal loop start'")
    sv.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (0.0.0.0: every interface, for a Label Studio on another machine)")
    sv.add_argument("--port", type=int, default=9090, help="port to listen on (0: any free port)")
    sv.add_argument("--token", default=None,
                    help=f"shared secret (at least 16 characters) every request but /health must carry, as "
                         f"'Authorization: Bearer TOKEN' or as the password of HTTP Basic auth; or set ${TOKEN_ENV}")
    g = sv.add_argument_group("Label Studio", "where the next cycles' tasks are pushed (without: only answered)")
    g.add_argument("--ls-url", default=None, help="Label Studio's URL, e.g. http://127.0.0.1:8080")
    g.add_argument("--ls-api-key", default=None,
                   help=f"Label Studio API token (legacy token or personal access token); or set ${API_KEY_ENV}")
    g.add_argument("--project", type=int, default=None, help="the Label Studio project id of the run")
    sv.add_argument("--no-advance", action="store_true",
                    help="do not advance the run when a cycle is answered (viewal loop next does it)")
    sv.add_argument("--threads", type=int, default=None, help="torch threads of predictions and training")
    sv.add_argument("--verbose", action="store_true", help="log every request")


def run(args: argparse.Namespace) -> int:
    from viewal.labelling.lsbackend import LabelStudioBackend, LabelStudioClient, serve

    token = args.token or os.environ.get(TOKEN_ENV)
    if not token:
        raise ValueError(f"give the shared secret with --token or ${TOKEN_ENV}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must lie in 0..65535, got {args.port}")
    key = args.ls_api_key or os.environ.get(API_KEY_ENV)
    client = None
    if args.ls_url:
        if not key:
            raise ValueError(f"--ls-url needs Label Studio's API token: --ls-api-key or ${API_KEY_ENV}")
        if args.project is None:
            raise ValueError("--ls-url needs the project to push tasks into: --project ID")
        client = LabelStudioClient(args.ls_url, key)
    elif args.ls_api_key:
        raise ValueError("--ls-api-key is used with --ls-url only")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s viewal label-studio: %(message)s")
    backend = LabelStudioBackend(args.run, token, client=client, project=args.project,
                                 auto_advance=not args.no_advance, threads=args.threads)

    def ready(url: str) -> None:
        print(f"serving run {args.run} to Label Studio at {url} (model URL; webhook {url}/webhook); "
              f"Ctrl-C stops", flush=True)

    rc = serve(backend, args.host, args.port, ready=ready)
    if backend.busy():  # stopped by a second signal during an advance: leave it now (it resumes at the next start)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc
