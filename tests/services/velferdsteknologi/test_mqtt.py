"""Readings through a real Mosquitto broker: each device with its own credentials,
publishing only on its own topic; stored once however often a reading comes; a consumer
killed with kill -9 mid-stream loses nothing (what it had not acknowledged comes again)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

import aiomqtt
import pytest

from enjournal.services.velferdsteknologi.ingest import Ingest
from enjournal.services.velferdsteknologi.mqtt import Broker, Consumer
from tests.probes import current_of_type

from .conftest import DEVICE_SECRET, PATIENTS
from .test_ingest import reading

pytestmark = pytest.mark.slow


def device_client(port: int, device: str, password: str | None = None) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        port,
        username=device,
        password=password or DEVICE_SECRET + device,
        identifier=f"pub-{device}-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V5,
    )


async def publish(port: int, device: str, bodies: list[bytes], topic: str | None = None) -> None:
    async with device_client(port, device) as client:
        for body in bodies:
            await client.publish(topic or f"vkp/{device}/readings", body, qos=1)


async def until(check, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        await asyncio.sleep(0.05)


class Running:
    """A consumer in this process, in its own shared-subscription group."""

    def __init__(self, hub, broker):
        self.ingest = Ingest(hub)
        group = uuid.uuid4().hex[:8]
        broker_url = Broker.from_url(broker.url)
        self.consumer = Consumer(self.ingest, broker_url, f"c-{group}", group=group)
        self.stop = asyncio.Event()

    async def __aenter__(self):
        self.task = asyncio.create_task(self.consumer.run(self.stop))
        await asyncio.sleep(0.3)  # subscribed
        return self

    async def __aexit__(self, *exc):
        self.stop.set()
        await asyncio.wait_for(self.task, 5)

    async def handled(self, count: int) -> None:
        async def done():
            counts = self.ingest.counts
            return counts["stored"] + counts["duplicate"] + counts["refused"] >= count

        await until(done)


async def observations(platform) -> list[bytes]:
    return [content for _, content in await current_of_type(platform.store, "Observation")]


async def test_readings_through_the_broker_are_stored_once(hub, private_broker):
    async with Running(hub, private_broker) as running:
        bodies = [reading(n) for n in range(30)]
        await publish(private_broker.port, "dev-oxi-1", bodies + bodies[:10])  # 10 resent
        await running.handled(40)
    assert running.ingest.counts["stored"] == 30
    assert running.ingest.counts["duplicate"] == 10
    assert len(await observations(hub)) == 30


async def test_a_device_publishes_only_on_its_own_topic_and_for_its_own_patient(
    hub, private_broker
):
    other = PATIENTS["vkp-pas-2"]
    async with Running(hub, private_broker) as running:
        # dev-oxi-1 may not publish as dev-scale-2: the broker drops it (not authorised)
        as_other = "vkp/dev-scale-2/readings"
        await publish(private_broker.port, "dev-oxi-1", [reading(1)], topic=as_other)
        # on its own topic, for a patient it is not assigned to: refused by the hook
        await publish(private_broker.port, "dev-oxi-1", [reading(2, patient=other), reading(3)])
        await running.handled(2)
        await asyncio.sleep(0.3)  # nothing more arrives
    assert running.ingest.counts["refused:http-403"] == 1
    assert running.ingest.counts["stored"] == 1
    stored = await observations(hub)
    assert len(stored) == 1 and b'"r-3"' in stored[0]


async def test_a_device_with_a_wrong_password_is_not_let_in(private_broker):
    with pytest.raises(aiomqtt.MqttError):
        async with device_client(private_broker.port, "dev-oxi-1", password="guess"):
            pass


@pytest.mark.backends("postgres")
async def test_kill_minus_9_mid_stream_loses_nothing(hub, private_broker, store_url):
    """A consumer process killed with SIGKILL while readings stream in; a new process under
    the same client id gets what the first had not acknowledged: the stored set equals the
    published set, each once."""
    total, client_id, group = 2000, f"kill-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:8]
    processes = [_consumer_process(store_url, private_broker.url, client_id, group)]
    try:
        await _until_consuming(hub, private_broker.port)  # its session exists from now on
        # All published at once: the consumer then holds many read but not yet stored,
        # the ones an acknowledgement on receipt would lose.
        await publish(private_broker.port, "dev-oxi-1", [reading(n) for n in range(total)])
        await until(lambda: _at_least(hub, 300), seconds=60)
        processes[0].send_signal(signal.SIGKILL)
        processes[0].wait(timeout=10)
        at_kill = len(await observations(hub))
        assert at_kill < total, "the first consumer finished before it was killed: no test"
        processes.append(_consumer_process(store_url, private_broker.url, client_id, group))
        await _until_stored(hub, total, processes[1])
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
    stored = await observations(hub)
    ids = sorted(
        int(c.split(b'"value":"r-')[1].split(b'"')[0]) for c in stored if b'"value":"r-' in c
    )
    assert ids == list(range(total))  # every published reading, once


async def _until_stored(hub, total: int, consumer) -> None:
    try:
        await until(lambda: _at_least(hub, total), seconds=120)
        await asyncio.sleep(1.0)  # anything extra would show now
    except AssertionError:
        stored = len(await observations(hub))
        consumer.send_signal(signal.SIGTERM)
        _, err = consumer.communicate(timeout=30)
        raise AssertionError(f"{stored} of {total} stored; consumer: {err[-3000:]!r}") from None


async def _until_consuming(hub, port: int) -> None:
    """A new consumer process takes a while to start (more on a loaded machine): readings
    published before it subscribed reach nobody.  Probe until one is stored."""
    for n in range(240):
        await publish(port, "dev-oxi-1", [reading(0, id=f"probe-{n}")])
        if await _at_least(hub, 1):
            return
        await asyncio.sleep(0.5)
    raise AssertionError("the consumer process never started consuming")


async def _at_least(hub, count: int) -> bool:
    return len(await current_of_type(hub.store, "Observation")) >= count


def _consumer_process(store_url: str, broker_url: str, client_id: str, group: str):
    env = {**os.environ, "ENJOURNAL_MQTT_URL": broker_url}
    command = [
        sys.executable,
        "-m",
        "enjournal.cli",
        "vkp",
        "consume",
        "--database",
        store_url,
        "--client-id",
        client_id,
        "--group",
        group,
        "--batch",
        "200",
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
