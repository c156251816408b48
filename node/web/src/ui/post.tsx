// One post: who wrote it (name, profession, facility) and when; 「見ました」 and who has seen
// it; its attachments; editing and deleting one's own.
import { useState } from "preact/hooks";
import type { Post } from "../gen/kizuna/common/v1/types_pb";
import { useApp } from "./app-context";
import { Attachments } from "./attachments";
import { ErrorBox, useAction } from "./common";
import { role, when } from "./labels";

export function PostView({ roomId, post, names, onChanged }: { roomId: bigint; post: Post; names: Map<bigint, string>; onChanged: () => void }) {
  const { me } = useApp();
  const [editing, setEditing] = useState(false);
  const mine = post.authorId === me.accountId;
  const acked = post.ackIds.includes(me.accountId);
  const act = useAction("操作", async (c, key, what: "ack" | "delete") => {
    const target = { idempotencyKey: key, roomId, seq: post.seq };
    if (what === "ack") await c.posts.ackPost(target);
    else await c.posts.deletePost(target);
    return true;
  });
  const run = async (what: "ack" | "delete") => {
    if (what === "delete" && !confirm("この投稿を削除しますか？")) return;
    if (await act.run(what)) onChanged();
  };
  return (
    <li class={mine ? "post mine" : "post"} data-seq={String(post.seq)}>
      <div class="post-head">
        <span class="author">{post.authorName}</span>
        <span class="muted">
          {role(post.authorKind, post.authorProfession)} {post.authorFacility}
        </span>
        <time class="muted">{when(post.postedAt)}</time>
      </div>
      {post.deleted ? (
        <p class="muted">この投稿は削除されました。</p>
      ) : editing ? (
        <EditPost roomId={roomId} post={post} done={() => (setEditing(false), onChanged())} />
      ) : (
        <>
          {(post.text || post.edited) && (
            <p class="post-text">
              {post.text}
              {post.edited && <span class="muted">（編集済み）</span>}
            </p>
          )}
          <Attachments items={post.attachments} />
        </>
      )}
      {!post.deleted && (
        <div class="post-actions">
          <Seen post={post} names={names} />
          {!mine && !acked && (
            <button class="ack" disabled={act.busy} onClick={() => run("ack")}>
              見ました
            </button>
          )}
          {mine && !editing && (
            <button class="link" onClick={() => setEditing(true)}>
              編集
            </button>
          )}
          {mine && (
            <button class="link danger" disabled={act.busy} onClick={() => run("delete")}>
              削除
            </button>
          )}
        </div>
      )}
      <ErrorBox message={act.error} />
    </li>
  );
}

/** 「見ました 2人」, with who when opened. */
function Seen({ post, names }: { post: Post; names: Map<bigint, string> }) {
  if (post.ackIds.length === 0) return null;
  const who = post.ackIds.map((id) => names.get(id) ?? `ID ${id}`).join("、");
  return (
    <details class="seen">
      <summary>見ました {post.ackIds.length}人</summary>
      <span class="seen-by">{who}</span>
    </details>
  );
}

function EditPost({ roomId, post, done }: { roomId: bigint; post: Post; done: () => void }) {
  const [text, setText] = useState(post.text);
  const save = useAction("編集", (c, key) => c.posts.editPost({ idempotencyKey: key, roomId, seq: post.seq, text }));
  const submit = async (e: Event) => {
    e.preventDefault();
    if (await save.run()) done();
  };
  return (
    <form onSubmit={submit} aria-label="投稿を編集">
      <label class="sr-only" for={`edit-${post.seq}`}>
        投稿の編集
      </label>
      <textarea id={`edit-${post.seq}`} rows={3} value={text} onInput={(e) => setText(e.currentTarget.value)} />
      <ErrorBox message={save.error} />
      <button class="primary small" disabled={save.busy || text.trim().length === 0}>
        保存
      </button>
      <button type="button" class="secondary small" onClick={done}>
        取消
      </button>
    </form>
  );
}
