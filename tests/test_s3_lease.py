"""The writer's lease in a real S3 bucket (SeaweedFS, which honours conditional writes as AWS,
R2 and MinIO do): two instances claiming at once, exactly one wins; a writer's own head never
replaces a newer writer's that landed between its read and its write."""

import threading

import pytest
from conftest import NOW
from helpers import users_in

from destinations import Stale
from lease import HeadState, Lease
from s3_destination import S3Lease, S3Place


class Racing(S3Lease):
    """An S3Lease that, after its first read of the head, waits for `pause` to return: its
    rivals act on the same head meanwhile, as instances starting in the same second do."""

    def __init__(self, place, pause):
        super().__init__(place)
        self.pause = pause

    def _read_record(self, name, parse):
        found = super()._read_record(name, parse)
        if self.pause is not None and name == "head.json":
            self.pause, pause = None, self.pause
            pause()
        return found


def place(s3_server, prefix):
    return S3Place(s3_server.bucket, prefix, s3_server.endpoint_url)


def claim_at_once(s3_server, prefix, names, generation):
    """Each name claims `generation` in the bucket at the same time: {name: won}."""
    meet = threading.Barrier(len(names), timeout=30)
    won = {}

    def claim(name):
        lease = Lease([Racing(place(s3_server, prefix), meet.wait)])
        lease.become(generation, name)
        try:
            won[name] = not lease.publish(HeadState.WRITING) and lease.decided([])
        except Stale:
            won[name] = False

    threads = [threading.Thread(target=claim, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return won


def test_the_bucket_of_the_tests_honours_conditional_writes(s3_server, s3_env):
    assert S3Lease(place(s3_server, s3_env)).compare_and_set


@pytest.mark.parametrize("rivals", [2, 3])
def test_instances_claiming_at_once_exactly_one_wins_and_the_head_is_its(s3_server, s3_env, rivals):
    names = [f"vm-{n}" for n in range(rivals)]
    won = claim_at_once(s3_server, s3_env, names, generation=1)
    assert sorted(won.values()) == [False] * (rivals - 1) + [True]
    head = S3Lease(place(s3_server, s3_env)).read_head()
    assert head.writer == next(name for name, ok in won.items() if ok) and head.generation == 1


def test_rivals_over_an_existing_head_exactly_one_wins(s3_server, s3_env):
    previous = Lease([S3Lease(place(s3_server, s3_env))])
    previous.become(4, "vm-old")
    previous.publish(HeadState.FINAL, NOW)
    won = claim_at_once(s3_server, s3_env, ["vm-a", "vm-b"], generation=5)
    assert sorted(won.values()) == [False, True]


def test_a_writers_head_never_replaces_a_newer_writers_that_landed_between_its_read_and_write(
    s3_server, s3_env
):
    old = Lease([S3Lease(place(s3_server, s3_env))])
    old.become(1, "vm-old")
    old.publish(HeadState.WRITING)
    has_read, go_on = threading.Event(), threading.Event()
    old.stores = [Racing(place(s3_server, s3_env), lambda: (has_read.set(), go_on.wait(30)))]
    outcome = {}

    def go_quiet():  # the old writer going quiet, say
        try:
            old.publish(HeadState.QUIET, NOW)
            outcome["old"] = "published"
        except Stale as error:
            outcome["old"] = str(error)

    thread = threading.Thread(target=go_quiet)
    thread.start()
    assert has_read.wait(30)  # the old writer has read its own head, and fenced it: still its own
    new = Lease([S3Lease(place(s3_server, s3_env))])
    new.become(2, "vm-new")
    assert not new.publish(HeadState.WRITING)
    go_on.set()
    thread.join(60)
    assert "vm-new" in outcome["old"]  # it learned it is stale
    head = S3Lease(place(s3_server, s3_env)).read_head()
    assert (head.generation, head.writer, head.state) == (2, "vm-new", HeadState.WRITING)


def test_a_damaged_head_is_replaced_by_a_claim(s3_server, s3_env):
    where = place(s3_server, s3_env)
    where.client.put_object(Bucket=where.bucket, Key=where.prefix + "head.json", Body=b"{not json")
    lease = Lease([S3Lease(where)])
    lease.become(1, "vm-a")
    assert not lease.publish(HeadState.WRITING)
    head = S3Lease(where).read_head()
    assert (head.generation, head.writer, head.state) == (1, "vm-a", HeadState.WRITING)


@pytest.mark.e2e
def test_two_bots_started_together_with_a_bucket_one_serves_decided_without_a_settle(
    fake, run_bot, s3_server, s3_env
):
    from test_end_to_end import s3_settings
    from test_handover import CHAT, Users, serving

    settings = {"BACKUP_CHAT_ID": str(CHAT), **s3_settings(s3_server, s3_env)}
    a, b = run_bot(folder="a", **settings), run_bot(folder="b", **settings)
    fake.wait_for(lambda: "passive:" in a.log() + b.log(), 60, "one of them passive")
    server, other = (b, a) if "passive:" in a.log() else (a, b)
    serving(server)
    assert "a conditional write decided it" in server.log()
    assert "at the same time; it serves" not in other.log()  # no settle and read back was needed
    users = Users(fake, first_id=9600)
    for _ in range(3):
        users.one()
    assert server.stop()[0] == 0
    serving(other)  # it takes over once the first stops cleanly
    users.one()
    assert other.stop()[0] == 0
    assert set(users.answered) <= users_in(other.db_path)
