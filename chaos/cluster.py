"""A three-node RabbitMQ cluster of the fault suite's own, beside the shared broker on 5672.

Each node is Debian's `rabbitmq-server` in the foreground, with its own node name, AMQP and
distribution ports, and data and log directories under one temporary directory. It also gets
config files of its own: the system's (/etc/rabbitmq) pin the listener to 5672 and the node name
to rabbit@localhost, which are the shared broker's.

The nodes share an Erlang cookie made for this run, not the shared node's: a CLI call aimed at
the wrong node then fails to authenticate instead of changing the shared broker.
"""

import json
import os
import secrets
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tests.support.net import free_port

# The real scripts. /usr/sbin's wrappers `su` to the rabbitmq user, whose cookie is the shared
# node's, and drop the environment that makes a node ours.
RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
NODE_PREFIX = "hookhub-chaos"
CLUSTER_SIZE = 3
START_TIMEOUT_S = 90.0
CLI_TIMEOUT_S = 60.0
TEARDOWN_TIMEOUT_S = 5.0
# Only what differs from the defaults. No log to the console: each node has its log file.
RABBITMQ_CONF = "log.console = false\nlog.file.level = info\n"
# The hung-node detection we recommend (net_ticktime, aten's poll): the deployment's own file, so
# that `hang-node` judges what is deployed.
ADVANCED_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "rabbitmq" / "advanced.config"


class ClusterError(RuntimeError):
    """The cluster could not be started or changed as asked."""


@dataclass
class Node:
    index: int
    home: Path  # the cluster's directory: the cookie, the config files, the data
    log_dir: Path
    amqp_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"{NODE_PREFIX}-{self.index}@localhost"

    def url(self, vhost: str) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/{quote(vhost, safe='')}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the node process; returns at once (`Cluster.wait_running` waits for it)."""
        env = {
            **cli_env(self.home),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.log_dir),
            "RABBITMQ_CONFIG_FILE": str(self.home / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(ADVANCED_CONFIG),
            # No plugins, so no management listener on 15672 (the shared node's).
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.home / "enabled_plugins"),
            # Erlang distribution on loopback only, as the shared node has it.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        log = open(self.log_dir / f"node-{self.index}.out", "ab")
        # A session of its own: a Ctrl-C of `make chaos` reaches us, not the node, and the
        # teardown ends the node's whole process group (the script, beam, its helpers) by its id.
        self.process = subprocess.Popen(
            [str(RABBITMQ_BIN / "rabbitmq-server")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def stop(self) -> None:
        """A clean stop: the node says goodbye to its peers, as in a rolling restart."""
        rabbitmqctl(self, "stop")
        self._reap()

    def kill(self) -> None:
        """kill -9 of the Erlang VM, as a crash or the OOM killer would."""
        for pid in self._beams():
            os.kill(pid, signal.SIGKILL)
        self._reap()

    def freeze(self) -> None:
        """SIGSTOP of the Erlang VM: a node that hangs (its sockets stay open, nothing moves)."""
        for pid in self._beams():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._beams():
            os.kill(pid, signal.SIGCONT)

    def destroy(self) -> None:
        """End the node at once (teardown: its data is thrown away)."""
        if self.process is None or self.process.poll() is not None:
            return
        # Beam first: the foreground script then reaps it and exits, leaving no zombie; then
        # whatever else is left in the node's process group (its session is its own).
        self.kill()
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def _beams(self) -> list[int]:
        # The foreground script runs beam as its child. Found by the node name in its
        # environment (beam's command line does not carry it), so we never kill a stranger.
        return node_pids(f"RABBITMQ_NODENAME={self.name}", comm="beam.smp")

    def _reap(self) -> None:
        if self.process is not None:
            self.process.wait(timeout=CLI_TIMEOUT_S)


def cli_env(home: Path) -> dict[str, str]:
    """The environment of a RabbitMQ script: our cookie (in HOME), and an empty
    rabbitmq-env.conf instead of the system's, which names the shared node."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
    env.update(HOME=str(home), RABBITMQ_CONF_ENV_FILE=str(home / "rabbitmq-env.conf"))
    return env


def rabbitmqctl(node: Node, *args: str) -> str:
    result = subprocess.run(
        [str(RABBITMQ_BIN / "rabbitmqctl"), "-q", "-n", node.name, *args],
        env=cli_env(node.home),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise ClusterError(
            f"rabbitmqctl -n {node.name} {' '.join(args)} failed ({result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[:500]}"
        )
    return result.stdout


class Cluster:
    """Three nodes joined into one cluster; a context manager that always tears them down."""

    def __init__(self, home: Path, log_dir: Path, size: int = CLUSTER_SIZE) -> None:
        self.home, self.log_dir = home, log_dir
        self.nodes = [Node(index, home, log_dir) for index in range(1, size + 1)]

    def __enter__(self) -> "Cluster":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        refuse_if_taken()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.home / ".erlang.cookie").write_text(secrets.token_hex(20))
        (self.home / ".erlang.cookie").chmod(0o400)  # Erlang refuses a cookie others can read
        (self.home / "rabbitmq-env.conf").write_text("")
        (self.home / "rabbitmq.conf").write_text(RABBITMQ_CONF)
        (self.home / "enabled_plugins").write_text("[].\n")
        for node in self.nodes:  # in parallel: each takes seconds to boot
            node.start()
        self.wait_running()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            rabbitmqctl(node, "stop_app")
            rabbitmqctl(node, "join_cluster", first.name)
            rabbitmqctl(node, "start_app")
        running = self.running_members()
        if len(running) != len(self.nodes):
            raise ClusterError(f"the cluster formed with {sorted(running)} only")

    def wait_running(self) -> None:
        """Wait until every node has booted (starting any node that is down)."""
        for node in self.nodes:
            if not node.running:
                node.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        for node in self.nodes:
            # await_startup fails at once while the node is not yet registered with epmd.
            while True:
                if not node.running:
                    log = self.log_dir / f"node-{node.index}.out"
                    raise ClusterError(f"{node.name} exited while starting; see {log}")
                try:
                    rabbitmqctl(node, "await_startup", "--timeout", str(int(START_TIMEOUT_S)))
                    break
                except ClusterError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)

    def running_members(self) -> set[str]:
        status = json.loads(
            rabbitmqctl(self.any_running(), "cluster_status", "--formatter", "json")
        )
        return set(status["running_nodes"])

    def any_running(self) -> Node:
        for node in self.nodes:
            if node.running:
                return node
        raise ClusterError("no node of the cluster is running")

    def urls(self, vhost: str) -> list[str]:
        return [node.url(vhost) for node in self.nodes]

    @contextmanager
    def vhost(self, name: str) -> Iterator[list[str]]:
        """A fresh vhost for one scenario, deleted after it; yields each node's AMQP URL to it."""
        rabbitmqctl(self.any_running(), "add_vhost", name)
        rabbitmqctl(self.any_running(), "set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        try:
            yield self.urls(name)
        finally:
            # Best effort: the whole cluster is thrown away at the end, and a node still booting
            # must not turn the scenario's own outcome into this error.
            with suppress(ClusterError):
                rabbitmqctl(self.any_running(), "delete_vhost", name)

    def leader_of(self, vhost: str, queues: list[str]) -> Node:
        """The node leading most of these quorum queues (they are declared together, through
        one connection, so they usually share a leader). Refuses queues not replicated on every
        node: losing their leader would then prove nothing about failover."""
        listing = [
            queue
            for queue in json.loads(
                rabbitmqctl(
                    self.any_running(),
                    *("list_queues", "-p", vhost, "name", "leader", "members"),
                    *("--formatter", "json"),
                )
            )
            if queue["name"] in queues
        ]
        if unreplicated := [q["name"] for q in listing if len(q["members"]) < len(self.nodes)]:
            raise ClusterError(f"not on all {len(self.nodes)} nodes: {unreplicated}")
        leaders = Counter(queue["leader"] for queue in listing if queue.get("leader"))
        if not leaders:
            raise ClusterError(f"no leader found for {queues} in {vhost}")
        leader_name = leaders.most_common(1)[0][0]
        return next(node for node in self.nodes if node.name == leader_name)

    def close(self) -> None:
        for node in self.nodes:
            node.destroy()
        # SIGKILL is delivered, not awaited: give the helpers of beam a moment to go.
        deadline = time.monotonic() + TEARDOWN_TIMEOUT_S
        while (stray := stray_nodes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if stray:
            raise ClusterError(f"node processes left after the teardown: {stray}")


def node_pids(environ_entry: str, comm: str | None = None) -> list[int]:
    """Pids of processes with this entry (`NAME=value`) in their environment."""
    entry = environ_entry.encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if comm is not None and (proc / "comm").read_text().strip() != comm:
                continue
            if entry in (proc / "environ").read_bytes().split(b"\0"):
                pids.append(int(proc.name))
        except OSError:  # it ended meanwhile
            pass
    return pids


def stray_nodes() -> list[int]:
    """Pids of any process of a node of ours, from this run or an earlier one."""
    return [
        pid
        for index in range(1, CLUSTER_SIZE + 1)
        for pid in node_pids(f"RABBITMQ_NODENAME={NODE_PREFIX}-{index}@localhost")
    ]


def refuse_if_taken() -> None:
    if stray := stray_nodes():
        raise ClusterError(
            f"{NODE_PREFIX}-* nodes are already running (pids {stray}): another `make chaos`, or "
            f"one that was killed before its teardown. Stop them with `kill {stray[0]}` (each "
            "pid) and run again."
        )
