"""The plan of a multi-server leaderboard run: its servers, its shard route files and each shard's evaluator command.

The route file is split round-robin into K shard files, one per server (each ``<route>`` element copied as is, with
its scenarios and weathers), so that each shard gets routes from all over the file. Servers are the given
``host:port`` list, or K servers to start from ``CARLA_ROOT``, server k on RPC port ``base_port + k * port_stride``,
traffic-manager port ``base_tm_port + k * port_stride`` and GPU ``gpus[k % len(gpus)]``.
"""

from __future__ import annotations

import copy
import os
import shlex
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from autovla_agent.paths import PACKAGE_DIR
from autovla_agent.scale.engine import forwarded_env
from autovla_agent.scale.merge import run_route_ids
from autovla_agent.scale.shard import ServerSpec, ShardJob

__all__ = ["MultiServerConfig", "evaluator_command", "plan_servers", "prepare", "split_routes"]

DEFAULT_SERVER_COMMAND = (
    "{carla_root}/CarlaUE4.sh -RenderOffScreen -nosound -carla-rpc-port={port} -graphicsadapter={gpu}"
)
# What the evaluator and the server need from the driver's environment when they run on another node.
FORWARDED_ENV = ("PYTHONPATH", "CARLA_ROOT", "LEADERBOARD_ROOT", "SCENARIO_RUNNER_ROOT", "TEAM_CODE_ROOT")


@dataclass(frozen=True, kw_only=True, slots=True)
class MultiServerConfig:
    """A leaderboard evaluation over several CARLA servers (see the module docstring)."""

    routes: str
    out_dir: str
    checkpoint: str = ""  # merged results JSON; "" = <out_dir>/results.json
    agent: str = str(PACKAGE_DIR / "carla_agent.py")
    agent_config: str = ""
    evaluator: str = ""  # leaderboard_evaluator.py; "" = $LEADERBOARD_ROOT/leaderboard/leaderboard_evaluator.py
    python: str = ""  # interpreter of the evaluator; "" = this one
    routes_subset: str = ""
    repetitions: int = 1
    track: str = "SENSORS"
    timeout_s: float = 300.0  # the evaluator's --timeout
    servers: tuple[str, ...] = ()  # host:port of running servers (one shard each)
    carla_root: str = ""  # or start num_servers servers from here
    num_servers: int = 0
    gpus: tuple[int, ...] = ()  # GPU of server k: gpus[k % len(gpus)]; () = leave the GPU choice alone
    base_port: int = 2000
    base_tm_port: int = 8000
    port_stride: int = 10  # a CARLA server also takes the next two ports (streaming, secondary)
    server_command: str = ""  # template of the started server's command; "" = DEFAULT_SERVER_COMMAND
    # Bench2Drive's evaluator starts its own server from CARLA_ROOT on its --port and --gpu-rank: then this runner
    # only gives each shard its ports and GPU (pass --evaluator-arg=--gpu-rank={gpu}) and neither starts nor waits.
    evaluator_starts_server: bool = False
    server_start_timeout_s: float = 180.0
    server_settle_s: float = 5.0  # wait after the port opens (the world is still loading)
    evaluator_args: tuple[str, ...] = ()  # extra evaluator arguments; {port} {tm_port} {gpu} {shard} {host} filled in
    max_retries: int = 1  # reruns of a route that stopped the evaluator
    resume: bool = False
    ray_address: str = ""
    cpus_per_shard: float = 1.0
    poll_s: float = 2.0
    progress: bool = True

    def __post_init__(self) -> None:
        """Exactly one way of getting servers; sane counts."""
        if self.evaluator_starts_server:
            if self.servers or self.num_servers < 1:
                raise ValueError("--evaluator-starts-server needs --num-servers K (one shard each), not --servers")
        elif bool(self.servers) == bool(self.carla_root or self.num_servers):
            raise ValueError("give either --servers host:port,... or --carla-root with --num-servers")
        elif not self.servers and (self.num_servers < 1 or not (self.carla_root or self.server_command)):
            raise ValueError("starting servers needs --num-servers >= 1 and --carla-root (or --server-command)")
        if self.repetitions < 1 or self.max_retries < 0 or self.port_stride < 3:
            raise ValueError("repetitions must be >= 1, max_retries >= 0 and port_stride >= 3")

    @property
    def results_path(self) -> Path:
        """The merged results JSON."""
        return Path(self.checkpoint) if self.checkpoint else Path(self.out_dir) / "results.json"


def plan_servers(config: MultiServerConfig) -> list[ServerSpec]:
    """The servers of the run: the given ``host:port`` list, or ``num_servers`` to start with distinct ports/GPUs."""
    specs = []
    if config.servers:
        for k, item in enumerate(config.servers):
            host, sep, port = item.strip().rpartition(":")
            if not sep or not port.isdigit():
                raise ValueError(f"server {item!r} is not host:port")
            gpu = config.gpus[k % len(config.gpus)] if config.gpus else None
            specs.append(ServerSpec(host=host or "localhost", port=int(port), tm_port=_tm_port(config, k), gpu=gpu))
        return specs
    template = config.server_command or DEFAULT_SERVER_COMMAND
    for k in range(config.num_servers):
        port = config.base_port + k * config.port_stride
        gpu = config.gpus[k % len(config.gpus)] if config.gpus else 0
        if config.evaluator_starts_server:
            specs.append(ServerSpec(host="localhost", port=port, tm_port=_tm_port(config, k), gpu=gpu, external=True))
            continue
        fields = {"carla_root": config.carla_root, "port": port, "gpu": gpu, "shard": k, "python": sys.executable}
        launch = tuple(part.format(**fields) for part in shlex.split(template))
        specs.append(ServerSpec(host="localhost", port=port, tm_port=_tm_port(config, k), gpu=gpu, launch=launch))
    return specs


def _tm_port(config: MultiServerConfig, k: int) -> int:
    return config.base_tm_port + k * config.port_stride


def split_routes(routes: str | Path, subset: str, shards: int, out_dir: Path) -> tuple[list[str], list[list[str]]]:
    """Write ``shards`` route files (round-robin); return the run's route ids and each shard's, in order."""
    from autovla_agent.sim.world.route_files import parse_subset

    path = Path(routes)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ValueError(f"cannot read route file {path}: {exc}") from exc
    wanted = parse_subset(subset)
    elements = [el for el in root.iter("route") if wanted is None or el.get("id") in wanted]
    if not elements:
        raise ValueError(f"no routes in {path} (subset {subset!r})")
    ids = [str(el.get("id")) for el in elements]
    count = min(shards, len(elements))
    out_dir.mkdir(parents=True, exist_ok=True)
    shard_ids: list[list[str]] = []
    for k in range(count):
        part = ET.Element("routes")
        chosen = elements[k::count]
        part.extend(copy.deepcopy(el) for el in chosen)
        ET.indent(part, space="   ")
        text = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(part, encoding="unicode") + "\n"
        (out_dir / f"shard-{k}.xml").write_text(text, encoding="utf-8")
        shard_ids.append([str(el.get("id")) for el in chosen])
    return ids, shard_ids


def evaluator_command(
    config: MultiServerConfig, routes_xml: Path, checkpoint: Path, server: ServerSpec, k: int
) -> tuple[str, ...]:
    """The leaderboard evaluator's command line for shard ``k`` (without ``--resume``)."""
    evaluator = config.evaluator or str(
        Path(os.environ.get("LEADERBOARD_ROOT", ".")) / "leaderboard" / "leaderboard_evaluator.py"
    )
    fields = {
        "port": server.port,
        "tm_port": server.tm_port,
        "gpu": "" if server.gpu is None else server.gpu,
        "shard": k,
        "host": server.host,
    }
    # The leaderboard parses its flags with argparse "--flag value"; "=" keeps values that start with "-" intact.
    cmd = [
        config.python or sys.executable,
        evaluator,
        f"--routes={routes_xml}",
        f"--agent={Path(config.agent).resolve()}",
        f"--agent-config={config.agent_config}",
        f"--checkpoint={checkpoint}",
        f"--debug-checkpoint={checkpoint.with_suffix('.live.txt')}",
        f"--host={server.host}",
        f"--port={server.port}",
        f"--traffic-manager-port={server.tm_port}",
        f"--repetitions={config.repetitions}",
        f"--track={config.track}",
        f"--timeout={config.timeout_s}",
    ]
    cmd += [arg.format(**fields) for arg in config.evaluator_args]
    return tuple(cmd)


def prepare(config: MultiServerConfig) -> tuple[list[str], list[ShardJob]]:
    """Shard files and jobs of the run; the run's record ids in order."""
    out = Path(config.out_dir).resolve()
    servers = plan_servers(config)
    ids, shard_ids = split_routes(config.routes, config.routes_subset, len(servers), out / "shards")
    names = run_route_ids(ids, config.repetitions)
    env = {**forwarded_env(), **{k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}}
    jobs = []
    for k, ids_k in enumerate(shard_ids):
        server = servers[k]
        routes_xml = out / "shards" / f"shard-{k}.xml"
        checkpoint = out / "shards" / f"shard-{k}.json"
        if not config.resume and checkpoint.exists():
            checkpoint.unlink()
        job_env = dict(env)
        if server.gpu is not None:
            job_env["CUDA_VISIBLE_DEVICES"] = str(server.gpu)
        jobs.append(
            ShardJob(
                shard=k,
                routes_xml=str(routes_xml),
                checkpoint=str(checkpoint),
                route_ids=tuple(run_route_ids(ids_k, config.repetitions)),
                server=server,
                command=evaluator_command(config, routes_xml, checkpoint, server, k),
                env=job_env,
                evaluator_log=str(out / "logs" / f"shard-{k}-evaluator.log"),
                server_log=str(out / "logs" / f"shard-{k}-server.log"),
                max_retries=config.max_retries,
                resume=config.resume,
                server_start_timeout_s=config.server_start_timeout_s,
                server_settle_s=config.server_settle_s,
            )
        )
    return names, jobs
