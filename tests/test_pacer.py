"""Telegram's pace across processes (pacer.Pacer): what one process wrote to a chat, listed in
the chat's index (writes_in) and learned by the next (learn), keeps the two together within
Telegram's guidance for a group (at most 3 writes in any 3 s, 20 a minute), whatever each one
wrote and whenever the second one starts. The clocks are made up: each process has its own
monotonic clock, Telegram's clock is another, and a process knows Telegram's only from the
whole-second dates it hears (saw_server_time)."""

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

import bot_api
import pacer
from telegram_index import Index, Seal, parse_index, serialize

GROUP = -1001234


class World:
    """Telegram's clock, and the writes that reached the chat by it."""

    def __init__(self):
        self.now = 100_000.25  # Telegram's time (small: a float keeps fractions of a microsecond)
        self.arrived: list[float] = []

    def process(self, since_boot: float) -> pacer.Pacer:
        """A process whose monotonic clock read `since_boot` at this moment, and which heard
        Telegram's whole-second time once."""
        boot = self.now - since_boot
        process = pacer.Pacer(clock=lambda: self.now - boot, sleep=self.sleep)
        process.saw_server_time(math.floor(self.now))
        return process

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def write(self, process: pacer.Pacer, urgent: int | None = None) -> None:
        process.wait_for_turn(GROUP, True, 600.0, paced=True, urgent=urgent)
        self.arrived.append(self.now)

    def most_within(self, seconds: float) -> int:
        times = sorted(self.arrived)
        return max(
            (sum(1 for t in times[i:] if t - start < seconds) for i, start in enumerate(times)), default=0
        )


@settings(max_examples=60, deadline=None)
@given(
    first=st.lists(st.floats(0, 20), min_size=1, max_size=25),
    gap=st.floats(0, 70),
    second=st.integers(1, 12),
    urgent=st.booleans(),
)
def test_two_processes_in_turn_keep_the_guidance_through_the_index(first, gap, second, urgent):
    world = World()
    a = world.process(since_boot=1234.5)
    for pause in first:
        world.sleep(pause)
        world.write(a)
    listed = a.writes_in(GROUP)  # what its last index carries
    world.sleep(gap)
    b = world.process(since_boot=7.0)
    b.learn(GROUP, listed)
    for _ in range(second):
        world.write(b, urgent=0 if urgent else None)
    assert world.most_within(3.0) <= 3
    assert world.most_within(60.0) <= 20


def test_bulk_work_leaves_room_in_the_minute_for_what_cannot_wait():
    world = World()
    a = world.process(since_boot=50.0)
    for _ in range(15):
        world.write(a)
    start = world.now
    world.write(a)  # a sixteenth backup write waits for the minute
    assert world.now - start > 30
    b = world.process(since_boot=1.0)
    b.learn(GROUP, a.writes_in(GROUP))
    before = world.now
    for _ in range(4):  # a claim and a final backup's writes: within the minute's 20
        world.write(b, urgent=0)
    assert world.now - before < 8 and world.most_within(60.0) <= 20


def test_a_knock_counts_one_write_it_cannot_see():
    world = World()
    a = world.process(since_boot=10.0)
    world.write(a)
    world.write(a)  # the index lists these two
    listed = a.writes_in(GROUP)
    world.write(a)  # a backup's data: no index lists it yet
    b = world.process(since_boot=1.0)
    b.learn(GROUP, listed)
    world.write(b, urgent=1)
    assert world.most_within(3.0) <= 3


def test_learning_the_same_index_twice_counts_its_writes_once_and_a_burst_whole():
    world = World()
    a = world.process(since_boot=10.0)
    for _ in range(3):
        world.write(a)  # one burst: the same stamp three times
    listed = a.writes_in(GROUP)
    assert len(listed) == 3 and len(set(listed)) == 1
    b = world.process(since_boot=1.0)
    b.learn(GROUP, listed)
    b.learn(GROUP, listed)
    assert len(b.writes_in(GROUP)) == 3


def test_a_process_does_not_learn_its_own_writes_back():
    world = World()
    a = world.process(since_boot=10.0)
    world.write(a)
    a.learn(GROUP, a.writes_in(GROUP))
    assert len(a.writes_in(GROUP)) == 1


def test_edits_in_the_same_second_as_its_own_count_each_and_its_own_relisted_does_not():
    world = World()
    a = world.process(since_boot=10.0)
    world.write(a)
    edit = (math.floor(world.now) + 1.0, "edit 7")  # how any process lists an edit of message 7
    a.made_edit(*edit)
    a.learn(GROUP, [edit])  # another process's index lists this one's edit: known already
    assert len(a.writes_in(GROUP)) == 1
    a.learn(GROUP, [edit, edit])  # its edit and someone else's, with one label: one is new
    assert len(a.writes_in(GROUP)) == 2
    a.learn(GROUP, [], seen={"a knock": edit})  # seen: its own version, whatever the label
    a.learn(GROUP, [], seen={"another knock": edit})  # seen by another read, another version
    a.learn(GROUP, [], seen={"a knock": edit})  # the same one read again
    assert len(a.writes_in(GROUP)) == 4
    a.forget(GROUP, "a knock")  # it was this process's own edit after all: only that one goes
    assert len(a.writes_in(GROUP)) == 3


def test_a_write_counts_from_when_its_answer_came_not_when_it_left():
    world = World()
    a = world.process(since_boot=10.0)
    a.wait_for_turn(GROUP, True, 600.0, paced=True)
    world.sleep(2.0)  # an upload: Telegram counts it when it arrives
    a.landed()
    world.arrived.append(world.now)
    world.write(a)
    world.write(a)
    world.write(a)  # the fourth waits three seconds from the upload's arrival, not its start
    assert world.most_within(3.0) <= 3


def test_its_own_writes_keep_the_stamp_they_were_first_listed_with():
    world = World()
    a = world.process(since_boot=10.0)
    world.write(a)
    first = a.writes_in(GROUP)
    a.saw_server_time(math.floor(world.now) + 0.9)  # Telegram's clock, known better later
    assert a.writes_in(GROUP) == first  # a moved stamp would be learned again as another write


def test_a_message_date_outweighs_a_date_header_a_proxy_may_have_set():
    world = World()
    a = world.process(since_boot=10.0)
    a.saw_server_time(world.now + 3600, source="header")  # a proxy's clock, an hour ahead
    assert abs(a.server_now() - world.now) <= 1.0  # the message date heard at start wins


def test_a_stamp_from_a_clock_hours_ahead_counts_as_now_and_ends_within_the_minute():
    world = World()
    b = world.process(since_boot=3.0)
    b.learn(GROUP, [(world.now + 3 * 3600, "laptop")] * 2)
    world.write(b)
    assert world.now == 100_000.25  # two writes just now, and this one: 3 in 3 s
    world.write(b)
    assert world.now > 100_003  # the fourth waits for the window
    world.sleep(61)
    assert [by for _, by in b.writes_in(GROUP) if by == "laptop"] == []  # forgotten after a minute


def test_telegrams_clock_is_taken_from_what_it_said_not_this_machines():
    world = World()
    a = world.process(since_boot=100.0)
    a.saw_server_time(world.now - 5)  # an older date changes nothing: the latest is kept
    assert abs(a.server_now() - world.now) <= 1.0


def test_every_wait_is_cut_short_when_the_writer_starts_finishing():
    world = World()
    a = world.process(since_boot=10.0)
    for _ in range(15):
        world.write(a)
    finishing = {"at": world.now + 2.0}

    def budget():  # the writer starts finishing two seconds into the wait
        return bot_api.HURRIED_PACE_WAIT if world.now >= finishing["at"] else None

    waited = a.wait_for_turn(GROUP, True, 600.0, paced=True, pace_budget=budget)
    assert waited <= 2.0 + bot_api.HURRIED_PACE_WAIT + pacer.PACE_SLICE


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=50),
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=20,
    )
)
def test_whatever_an_index_lists_as_writes_reads_as_writes_or_nothing(value):
    seal = Seal("123:token")
    document = json.loads(serialize(Index(message_id=7, chat_id=GROUP), seal))
    body = {key: item for key, item in document.items() if key != "seal"}
    body["writes"] = value
    data = json.dumps(
        {
            **body,
            "seal": seal.sign(
                json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
            ),
        }
    )
    writes = parse_index(data.encode(), GROUP, 7, seal, True).writes
    assert len(writes) <= 100
    for stamp, by in writes:
        assert isinstance(stamp, float) and 0 < stamp < 1e11 and isinstance(by, str) and len(by) <= 40
