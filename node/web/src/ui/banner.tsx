// Says plainly when the data may be old: the node the page talks to is cut off from its hub, or
// no node answers; and when the page moved to another node.
import { useEffect, useState } from "preact/hooks";
import type { LinkState } from "../api/hub";
import { useApp } from "./app-context";
import { age } from "./labels";

export function LinkBanner() {
  const { hub } = useApp();
  const [state, setState] = useState<LinkState>(hub.state);
  const [, tick] = useState(0);
  useEffect(() => hub.subscribe(setState), [hub]);
  // The age in the message moves on even when nothing else happens.
  useEffect(() => {
    const timer = setInterval(() => tick((n) => n + 1), 10000);
    return () => clearInterval(timer);
  }, []);
  if (state.unreachable) {
    return (
      <div class="banner offline" role="alert">
        サーバーに接続できません。表示中の内容は {age(state.freshAt)} の状態です。接続でき次第、自動でつながります。
      </div>
    );
  }
  if (state.cutOff) {
    return (
      <div class="banner offline" role="alert">
        オフライン表示：接続先のサーバーがハブから切り離されています。最新の投稿が表示されていない可能性があります（最後に最新を確認したのは {age(state.freshAt)}）。
      </div>
    );
  }
  if (state.switchedFrom) {
    return (
      <div class="banner info" role="status">
        接続先のサーバーを切り替えました（{host(state.switchedFrom)} → {host(state.url)}）。
      </div>
    );
  }
  return null;
}

function host(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}
