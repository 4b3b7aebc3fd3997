// Shows the dashboard in the viewer's own time zone: the first visit adds ?tz=<zone> once.
(function () {
  var url = new URL(window.location.href);
  if (url.searchParams.has("tz")) return;
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!zone) return;
  url.searchParams.set("tz", zone);
  window.location.replace(url.toString());
})();
