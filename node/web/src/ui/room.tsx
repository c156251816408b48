// A room: a patient's timeline (newest first, as the service it replaces shows it) with its
// sub-rooms, a group or a 1:1 connection. Posts arrive live; reading marks them read.
import { useEffect, useRef, useState } from "preact/hooks";
import type { Post } from "../gen/kizuna/common/v1/types_pb";
import type { Event } from "../gen/kizuna/events/v1/event_service_pb";
import type { TimelineResponse } from "../gen/kizuna/posts/v1/post_service_pb";
import { MemberState, RoomKind, type GetRoomResponse } from "../gen/kizuna/rooms/v1/room_service_pb";
import { idempotencyKey } from "../api/ids";
import { useApp } from "./app-context";
import { Composer } from "./composer";
import { PatientDisasterPanel } from "./disaster/profile";
import { EmergencyAccessForm, EmergencyBanner } from "./emergency";
import { AccountKind } from "../gen/kizuna/common/v1/types_pb";
import { ErrorBox, Loading, PageTitle, useLoad } from "./common";
import { age } from "./labels";
import { Members } from "./members";
import { PostView } from "./post";
import { href } from "./route";
import { timestampDate } from "@bufbuild/protobuf/wkt";

const PAGE = 50;

export function RoomView({ roomId }: { roomId: bigint }) {
  const inRoom = (e: Event) => e.roomId === roomId;
  const room = useLoad((c) => c.rooms.getRoom({ roomId }), [roomId], (e) => inRoom(e) && e.kind.case === "membershipChanged");
  const timeline = useLoad(
    (c) => c.posts.timeline({ roomId, pageSize: PAGE }),
    [roomId],
    (e) => inRoom(e) && (e.kind.case === "postedSeq" || e.kind.case === "postUpdatedSeq"),
  );
  const [showMembers, setShowMembers] = useState(false);
  useStaleness(timeline.data);
  useMarkRead(roomId, timeline.data?.posts[0]?.seq);
  const names = memberNames(room.data);
  const { me } = useApp();
  // Not a member: the room answers NotFound. A professional may open it by emergency access;
  // a timeline that reads while the room does not is one read that way (read-only).
  const outsider = room.notFound && room.data === undefined;
  if (outsider && timeline.data) {
    return (
      <section>
        <PageTitle title="患者タイムライン（緊急アクセス）" back={href("patients")} />
        <EmergencyBanner />
        <Posts key={String(roomId)} roomId={roomId} first={timeline.data} names={names} onChanged={timeline.reload} />
      </section>
    );
  }
  if (outsider && timeline.notFound && me.kind === AccountKind.PROFESSIONAL) {
    return (
      <section>
        <PageTitle title="" back={href("patients")} />
        <EmergencyAccessForm roomId={roomId} onOpened={timeline.reload} />
      </section>
    );
  }
  return (
    <section>
      <PageTitle title={room.data?.title ?? ""} back={backTo(room.data)}>
        <button class="secondary small" aria-expanded={showMembers} onClick={() => setShowMembers(!showMembers)}>
          メンバー{room.data ? ` ${room.data.members.filter((m) => m.state === MemberState.ACTIVE).length}人` : ""}
        </button>
      </PageTitle>
      <Loading loaded={room} />
      {room.data && <RoomContext room={room.data} />}
      {room.data?.kind === RoomKind.PATIENT && room.data.patientId !== undefined && !room.data.homeHub && (
        <PatientDisasterPanel key={String(room.data.patientId)} patientId={room.data.patientId} name={room.data.title} />
      )}
      {showMembers && room.data && <Members room={room.data} onChanged={room.reload} />}
      <Composer roomId={roomId} onPosted={timeline.reload} />
      <Loading loaded={timeline} />
      {timeline.data && <Sending timeline={timeline.data} />}
      <Posts key={String(roomId)} roomId={roomId} first={timeline.data} names={names} onChanged={timeline.reload} />
    </section>
  );
}

/**
 * Older pages are fetched on demand and kept while the first page refreshes live; a change to
 * one of their posts (an ack, an edit, a delete, here or live) reloads them.
 */
function Posts({ roomId, first, names, onChanged }: { roomId: bigint; first?: TimelineResponse; names: Map<bigint, string>; onChanged: () => void }) {
  const { hub, live } = useApp();
  const [older, setOlder] = useState<Post[]>([]);
  const [token, setToken] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const nextToken = token ?? first?.nextPageToken ?? "";
  const more = async () => {
    try {
      const page = await hub.call((c) => c.posts.timeline({ roomId, pageSize: PAGE, pageToken: nextToken }));
      setOlder([...older, ...page.posts]);
      setToken(page.nextPageToken);
    } catch {
      setError("古い投稿を読み込めませんでした。もう一度お試しください。");
    }
  };
  const olderRange = older.length > 0 ? { from: older[older.length - 1].seq, to: older[0].seq } : null;
  const reloadOlder = async () => {
    if (!olderRange) return;
    // The newest (up to 200) of the older posts shown; those beyond stay as they were.
    const window = { roomId, afterSeq: olderRange.from - 1n, beforeSeq: olderRange.to + 1n, pageSize: Math.min(older.length, 200) };
    const page = await hub.call((c) => c.posts.timeline(window)).catch(() => null);
    const oldestFetched = page?.posts[page.posts.length - 1]?.seq;
    if (page && oldestFetched !== undefined) setOlder([...page.posts, ...older.filter((p) => p.seq < oldestFetched)]);
  };
  useEffect(
    () => live.listen((e) => e !== "resync" && e.roomId === roomId && e.kind.case === "postUpdatedSeq" && olderRange !== null && e.kind.value <= olderRange.to && void reloadOlder()),
    [olderRange?.from, olderRange?.to],
  );
  const changed = () => {
    onChanged();
    void reloadOlder();
  };
  const posts = dedupe([...(first?.posts ?? []), ...older]);
  if (first && posts.length === 0) return <p class="muted">まだ投稿はありません。</p>;
  return (
    <>
      <ol class="posts" aria-label="タイムライン">
        {posts.map((p) => (
          <PostView key={String(p.seq)} roomId={roomId} post={p} names={names} onChanged={changed} />
        ))}
      </ol>
      <ErrorBox message={error} />
      {nextToken && (
        <button class="secondary" onClick={more}>
          さらに前の投稿を読み込む
        </button>
      )}
    </>
  );
}

function dedupe(posts: Post[]): Post[] {
  const seen = new Set<bigint>();
  return posts.filter((p) => !seen.has(p.seq) && (seen.add(p.seq), true));
}

/** Sub-rooms of a patient's timeline; the way back to the timeline from a sub-room. */
function RoomContext({ room }: { room: GetRoomResponse }) {
  return (
    <>
      {room.homeHub && <p class="muted">この部屋は {room.homeHub} のハブにあります。投稿はそちらに送られます。</p>}
      {room.timelineRoomId !== undefined && (
        <p>
          <a href={href("room", room.timelineRoomId)}>← 患者タイムラインへ</a>
        </p>
      )}
      {room.subRooms.length > 0 && (
        <nav class="chips" aria-label="小部屋">
          {room.subRooms.map((s) => (
            <a class={s.unread > 0n ? "chip unread" : "chip"} href={href("room", s.roomId)}>
              {s.title}
              {s.unread > 0n && ` (${s.unread})`}
            </a>
          ))}
        </nav>
      )}
    </>
  );
}

/** Writes the home hub has not applied yet (a room of another hub): 「送信中」 or refused. */
function Sending({ timeline }: { timeline: TimelineResponse }) {
  if (timeline.sending.length === 0 && !timeline.homeHub) return null;
  return (
    <div>
      {timeline.homeHeardAt && <p class="muted">最終同期 {age(timestampDate(timeline.homeHeardAt))}</p>}
      <ul class="plain">
        {timeline.sending.map((w) => (
          <li class={w.refusedReason ? "error" : "notice"}>
            {w.refusedReason ? `送信できませんでした（${w.refusedReason}）` : "送信中"}：{w.text || w.kind}
          </li>
        ))}
      </ul>
    </div>
  );
}

function backTo(room: GetRoomResponse | undefined): string {
  if (!room) return href("patients");
  switch (room.kind) {
    case RoomKind.GROUP:
      return href("groups");
    case RoomKind.CONNECTION:
      return href("connections");
    case RoomKind.SUB_ROOM:
      return room.timelineRoomId !== undefined ? href("room", room.timelineRoomId) : href("patients");
    default:
      return href("patients");
  }
}

function memberNames(room: GetRoomResponse | undefined): Map<bigint, string> {
  return new Map((room?.members ?? []).map((m) => [m.accountId, m.displayName]));
}

/** A timeline served from a cut-off node's own copy says so in the banner. */
function useStaleness(timeline: TimelineResponse | undefined) {
  const { hub } = useApp();
  useEffect(() => {
    if (timeline) hub.noteStale(timeline.stale);
  }, [timeline]);
}

/** Marks the newest post read while the page is visible (once per new post). */
function useMarkRead(roomId: bigint, newest: bigint | undefined) {
  const { hub } = useApp();
  const marked = useRef<bigint>(0n);
  useEffect(() => {
    const mark = () => {
      if (newest === undefined || newest <= marked.current || document.visibilityState !== "visible") return;
      marked.current = newest;
      const key = idempotencyKey();
      // A failed marker only leaves the room unread; the next post or visit marks it again.
      hub.call((c) => c.posts.markRead({ idempotencyKey: key, roomId, upToSeq: newest })).catch(() => (marked.current = 0n));
    };
    mark();
    document.addEventListener("visibilitychange", mark);
    return () => document.removeEventListener("visibilitychange", mark);
  }, [roomId, newest]);
}
