// Passkeys (WebAuthn): make one on the security page, or sign with one at the second step.
// The portal sends the options as JSON (base64url for binary fields) and checks the answer itself.
(function () {
  "use strict";

  function toBytes(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) { base64 += "="; }
    var raw = atob(base64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    return bytes.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) { raw += String.fromCharCode(bytes[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (item) { return { type: item.type, id: toBytes(item.id), transports: item.transports }; });
  }

  function credentialJSON(credential) {
    var response = credential.response;
    var out = { id: credential.id, rawId: toText(credential.rawId), type: credential.type,
                clientExtensionResults: credential.getClientExtensionResults(), response: {
                  clientDataJSON: toText(response.clientDataJSON) } };
    if (response.attestationObject) {
      out.response.attestationObject = toText(response.attestationObject);
      if (response.getTransports) { out.response.transports = response.getTransports(); }
    } else {
      out.response.authenticatorData = toText(response.authenticatorData);
      out.response.signature = toText(response.signature);
      if (response.userHandle) { out.response.userHandle = toText(response.userHandle); }
    }
    if (credential.authenticatorAttachment) { out.authenticatorAttachment = credential.authenticatorAttachment; }
    return JSON.stringify(out);
  }

  function post(url, form) {
    return fetch(url, { method: "POST", credentials: "same-origin", body: new URLSearchParams(new FormData(form)),
                        headers: { "X-CSRFToken": form.elements.csrf_token.value, "Accept": "application/json" } });
  }

  // A first passkey brings recovery codes: shown here once, never kept anywhere the browser could show again.
  function showCodes(form, answer) {
    var section = document.getElementById("passkey-codes");
    section.querySelector("[role=status]").textContent = answer.message;
    var list = section.querySelector("ul");
    answer.codes.forEach(function (code) {
      var item = document.createElement("li");
      var text = document.createElement("code");
      text.textContent = code;
      item.appendChild(text);
      list.appendChild(item);
    });
    form.reset();
    section.hidden = false;
    section.scrollIntoView();
  }

  function run(form, ask) {
    var error = form.querySelector("#passkey-error");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      error.textContent = "";
      post(form.dataset.options, form)
        .then(function (response) { return response.json(); })
        .then(function (options) {
          if (options.error) { throw new Error(options.error); }
          return ask(options);
        })
        .then(function (credential) {
          form.elements.credential.value = credentialJSON(credential);
          return post(form.action, form);
        })
        .then(function (response) { return response.json(); })
        .then(function (answer) {
          if (answer.error) { throw new Error(answer.error); }
          if (answer.codes) { showCodes(form, answer); return; }
          window.location.assign(answer.next);
        })
        .catch(function (problem) { error.textContent = problem.message || String(problem); });
    });
  }

  if (!window.PublicKeyCredential) { return; }
  var make = document.getElementById("passkey-form");
  if (make) {
    run(make, function (options) {
      options.challenge = toBytes(options.challenge);
      options.user.id = toBytes(options.user.id);
      options.excludeCredentials = descriptors(options.excludeCredentials);
      return navigator.credentials.create({ publicKey: options });
    });
  }
  var sign = document.getElementById("passkey-sign-in");
  if (sign) {
    run(sign, function (options) {
      options.challenge = toBytes(options.challenge);
      options.allowCredentials = descriptors(options.allowCredentials);
      return navigator.credentials.get({ publicKey: options });
    });
  }
}());
