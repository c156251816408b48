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

// Push notifications (お知らせ): the hub sends which room has news and its link, never what
// was written (see node/server/src/notifier.rs). The tag is the room's link, so a repeat of the
// same notice (a failover may send one twice) replaces the first instead of showing twice.
self.addEventListener("push", (event) => {
  let message = {};
  try {
    message = event.data ? event.data.json() : {};
  } catch {
    message = {};
  }
  const title = typeof message.title === "string" ? message.title : "Kizuna";
  const body = typeof message.body === "string" ? message.body : "参加している部屋に新しい投稿があります";
  const url = typeof message.url === "string" ? message.url : "/";
  const tag = typeof message.tag === "string" ? message.tag : url;
  event.waitUntil(self.registration.showNotification(title, { body, tag, data: { url } }));
});

// A tap on the notification: bring a Kizuna window to the room, or open one there. The room is
// opened on this worker's own node (where this browser is signed in), whichever node sent it.
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const sent = new URL(event.notification.data?.url ?? "/", self.location.href);
  const target = new URL("/" + sent.hash, self.location.origin).href;
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      const open = windows.find((w) => new URL(w.url).origin === self.location.origin);
      if (open) return open.navigate(target).then((w) => (w ?? open).focus());
      return self.clients.openWindow(target);
    }),
  );
});
