// The page's own files, kept by the browser so that the app opens even when the node it was
// bookmarked on is down (a storm, a blackout): the page then carries on against the hub's other
// nodes, which it learnt on earlier visits. Network first, so a new release shows at once; the
// cache answers only when the node does not. API calls are never cached.
const CACHE = "kizuna-app";
const FILES = ["/", "/index.html", "/app.js", "/app.css"];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(FILES))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || !FILES.includes(url.pathname)) return;
  event.respondWith(
    fetch(event.request)
      .then((answer) => {
        if (answer.ok) {
          const copy = answer.clone();
          event.waitUntil(caches.open(CACHE).then((cache) => cache.put(event.request, copy)));
        }
        return answer;
      })
      .catch(() => caches.match(event.request).then((kept) => kept ?? caches.match("/index.html"))),
  );
});
