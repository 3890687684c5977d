// umi's service worker: keeps the app shell (the page, its JavaScript, wasm and CSS) so the app
// opens with no server after a first visit. Network first, so a rebuilt app is picked up at
// once; the cached copy answers only when the server cannot be reached. Models and adapters are
// not kept here: the app stores them itself in the Cache API ("umi-models", "umi-adapters").
const SHELL = 'umi-app-shell';

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

function isShell(url) {
  if (url.origin !== self.location.origin) return false;
  const path = url.pathname;
  if (/^\/(fixture|models|agent)\//.test(path)) return false;
  return path.endsWith('/') || /\.(html|js|wasm|css)$/.test(path);
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' || !isShell(new URL(request.url))) return;
  event.respondWith((async () => {
    const cache = await caches.open(SHELL);
    try {
      const response = await fetch(request);
      if (response.ok) await cache.put(request, response.clone());
      return response;
    } catch (offline) {
      const cached = await cache.match(request, { ignoreSearch: true });
      if (cached) return cached;
      throw offline;
    }
  })());
});
