// The login form: carry ?next= through, and say when a key was refused.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const q = new URLSearchParams(location.search);
  const next = q.get("next");
  if (next && next.startsWith("/") && !next.startsWith("//")) document.getElementById("next").value = next;
  if (q.get("failed")) document.getElementById("failed").hidden = false;
});
