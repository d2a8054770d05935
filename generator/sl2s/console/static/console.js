// sl2s console: small enhancements only; every page works without this file.
document.addEventListener("DOMContentLoaded", function () {
  // an event permalink: bring the highlighted event into view and give it focus
  var mark = document.querySelector(".event.highlight");
  if (mark) { mark.scrollIntoView({block: "center"}); mark.focus({preventScroll: true}); }
  // "/" focuses the search box (unless typing in a field already)
  document.addEventListener("keydown", function (e) {
    var t = e.target && e.target.tagName;
    if (e.key === "/" && t !== "INPUT" && t !== "SELECT" && t !== "TEXTAREA") {
      e.preventDefault(); document.getElementById("q").focus();
    }
  });
});
