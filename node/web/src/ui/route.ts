// Hash routes (#/patients, #/room/12, #/map…): the hub serves one page, and a reload or a
// shared link opens the same view.
import { useEffect, useState } from "preact/hooks";

export function useRoute(): string[] {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const changed = () => setHash(location.hash);
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return hash.replace(/^#\/?/, "").split("/").filter((p) => p.length > 0).map(decodeURIComponent);
}

export function href(...parts: (string | bigint)[]): string {
  return "#/" + parts.map((p) => encodeURIComponent(String(p))).join("/");
}

export function go(...parts: (string | bigint)[]): void {
  location.hash = href(...parts);
}
