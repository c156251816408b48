// 検索: posts I may read, patients of my teams, people and facilities, in one query.
import { useState } from "preact/hooks";
import { ErrorBox, Notice, PageTitle, useAction } from "./common";
import { FACILITY_KINDS, profession, when } from "./labels";
import { href } from "./route";

export function SearchView() {
  const [query, setQuery] = useState("");
  const [asked, setAsked] = useState("");
  const [done, setDone] = useState<string | null>(null);
  const search = useAction("検索", (c, _key, q: string) => c.search.search({ query: q, pageSize: 30 }));
  const connect = useAction("つながり申請", (c, key, who: bigint) => c.connections.requestConnection({ idempotencyKey: key, accountId: who }));
  const [result, setResult] = useState<Awaited<ReturnType<typeof search.run>>>(undefined);
  const submit = async (e: Event) => {
    e.preventDefault();
    const q = query.trim();
    setAsked(q);
    setResult(await search.run(q));
  };
  const ask = async (who: bigint, name: string) => {
    if (await connect.run(who)) setDone(`${name} さんにつながり申請を送りました。`);
  };
  const empty = result && result.posts.length + result.patients.length + result.people.length + result.facilities.length === 0;
  return (
    <section>
      <PageTitle title="検索" />
      <form class="row" role="search" onSubmit={submit}>
        <label class="grow">
          <span class="sr-only">検索する言葉（2文字以上）</span>
          <input type="search" minLength={2} maxLength={100} required placeholder="投稿・患者・人・施設を検索（2文字以上）" value={query} onInput={(e) => setQuery(e.currentTarget.value)} />
        </label>
        <button class="primary" disabled={search.busy}>
          検索
        </button>
      </form>
      <ErrorBox message={search.error ?? connect.error} />
      {done && <Notice>{done}</Notice>}
      {empty && <p class="muted">「{asked}」に一致するものはありません。</p>}
      {result && result.patients.length > 0 && (
        <Hits title="患者">
          {result.patients.map((p) => (
            <li>
              <a href={href("room", p.roomId)}>{p.name}</a> <span class="muted">{p.kana}</span>
            </li>
          ))}
        </Hits>
      )}
      {result && result.posts.length > 0 && (
        <Hits title="投稿">
          {result.posts.map((h) => (
            <li>
              <a href={href("room", h.roomId)}>{h.roomTitle}</a>{" "}
              <span class="muted">
                {h.post?.authorName} {when(h.post?.postedAt)}
              </span>
              <p class="post-text">{h.post?.text}</p>
            </li>
          ))}
        </Hits>
      )}
      {result && result.people.length > 0 && (
        <Hits title="人">
          {result.people.map((p) => (
            <li class="row">
              <span class="grow">
                {p.displayName}{" "}
                <span class="muted">
                  {profession(p.profession)} {p.facility}
                </span>
              </span>
              <button class="secondary small" disabled={connect.busy} onClick={() => ask(p.accountId, p.displayName)}>
                つながる
              </button>
            </li>
          ))}
        </Hits>
      )}
      {result && result.facilities.length > 0 && (
        <Hits title="施設">
          {result.facilities.map((f) => (
            <li>
              <a href={href("facility", f.facilityId)}>{f.name}</a>{" "}
              <span class="muted">
                {FACILITY_KINDS[f.kind]}・{f.municipality}
              </span>
            </li>
          ))}
        </Hits>
      )}
    </section>
  );
}

function Hits({ title, children }: { title: string; children: preact.ComponentChildren }) {
  return (
    <div class="card">
      <h2>{title}</h2>
      <ul class="plain hits">{children}</ul>
    </div>
  );
}
