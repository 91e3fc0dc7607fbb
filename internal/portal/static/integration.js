// The Microsoft 365 integration page: status, connect, client secret,
// disable / enable / disconnect, and (when the sync API is present) Update
// now with live progress, the run report, run history and the dry run.
(function () {
  'use strict';
  const SB = window.SB;
  const $ = (id) => document.getElementById(id);

  const LABELS = { not_connected: 'Not connected', connected: 'Connected', disabled: 'Disabled', error: 'Needs attention' };
  const HELP = {
    not_connected: 'Register an application in Microsoft Entra ID with the redirect URIs below, then enter its IDs and a client secret and sign in with a Global Administrator account.',
    disabled: 'Synchronization and Microsoft sign-in are stopped; the settings are kept. Enable the integration to resume.',
  };

  let status = null;

  function fmtTime(s) {
    if (!s) return '';
    const d = new Date(s);
    return isNaN(d) ? s : d.toLocaleString();
  }

  function show(id, on) { const el = $(id); if (el) el.hidden = !on; }

  function render(st) {
    status = st;
    const badge = $('status-badge');
    badge.textContent = LABELS[st.status] || st.status;
    badge.dataset.status = st.status;
    $('status-text').textContent = LABELS[st.status] || st.status;
    show('status-card', true);

    $('redirect-uri').value = st.redirectUri || '';
    $('sso-redirect-uri').value = st.ssoRedirectUri || '';

    const help = $('status-help');
    const reason = st.status === 'error' ? (st.statusReason || 'The connection to Microsoft Entra ID failed. Update the client secret or reconnect.') : HELP[st.status];
    help.hidden = !reason;
    help.textContent = reason || '';
    help.className = 'alert ' + (st.status === 'error' ? 'alert-error' : 'alert-info');

    const acct = st.authorizationAccount;
    show('account-row', !!acct);
    if (acct) $('account-text').textContent = (acct.displayName ? acct.displayName + ' · ' : '') + (acct.userPrincipalName || '');
    show('connected-row', !!st.connectedAt);
    $('connected-text').textContent = fmtTime(st.connectedAt);
    show('secret-row', !!st.secretExpiresAt);
    $('secret-text').textContent = fmtTime(st.secretExpiresAt);
    show('next-row', !!st.nextSyncAt && st.status === 'connected');
    $('next-text').textContent = fmtTime(st.nextSyncAt);
    show('secret-warning', !!st.secretWarning);
    $('secret-warning').textContent = st.secretWarning || '';

    const missing = st.missingPermissions || [];
    show('missing-perms', missing.length > 0 && st.status !== 'not_connected');
    const ml = $('missing-list');
    ml.replaceChildren(...missing.map((m) => {
      const li = document.createElement('li');
      const c = document.createElement('code');
      c.textContent = m.permission;
      li.append(c, document.createTextNode(' — needed for ' + m.feature));
      return li;
    }));

    const linked = st.status !== 'not_connected';
    show('disconnect-open', linked);
    show('secret-open', linked);
    show('disable-open', st.status === 'connected' || st.status === 'error');
    show('enable-btn', st.status === 'disabled');

    // The connect form: open when not connected or in error (reconnect);
    // otherwise the IDs are shown read-only.
    const form = $('connect-form');
    const editable = st.status === 'not_connected' || st.status === 'error';
    for (const name of ['clientId', 'tenantId']) {
      const input = form.elements[name];
      if (!editable || !input.value) input.value = st[name] || input.value;
      input.readOnly = !editable;
    }
    show('secret-fieldset', editable);
    form.querySelector('.row-actions').hidden = !editable;
    $('connect-btn').textContent = st.status === 'error' ? 'Save and sign in again' : 'Save and sign in with Microsoft';

    if (SB.sync) SB.sync.statusChanged(st);
  }

  async function load() {
    const r = await SB.api('GET', '/api/v1/integration');
    if (!r.ok) {
      const pe = $('page-error');
      pe.textContent = 'The integration status could not be loaded: ' + SB.errorOf(r).message;
      pe.hidden = false;
      return;
    }
    $('page-error').hidden = true;
    render(r.data);
  }
  SB.reloadIntegration = load;

  $('connect-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    SB.clearErrors(f);
    const v = SB.formValues(f);
    let bad = false;
    for (const [name, label] of [['clientId', 'Application (client) ID'], ['tenantId', 'Tenant ID'], ['clientSecret', 'Client secret']]) {
      if (!v[name]) {
        const slot = f.querySelector('.field-error[data-for="' + name + '"]');
        slot.textContent = label + ' is required.';
        f.elements[name].setAttribute('aria-invalid', 'true');
        if (!bad) f.elements[name].focus();
        bad = true;
      }
    }
    if (bad) return;
    SB.busy(f, true);
    const r = await SB.api('POST', '/api/v1/integration/connect', { clientId: v.clientId, tenantId: v.tenantId, clientSecret: v.clientSecret });
    if (!r.ok || !r.data.authorizeUrl) {
      SB.busy(f, false);
      SB.showError(f, r);
      return;
    }
    f.elements.clientSecret.value = '';
    window.location.assign(r.data.authorizeUrl);
  });

  $('secret-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    SB.clearErrors(f);
    const secret = f.elements.clientSecret.value.trim();
    if (!secret) {
      f.querySelector('.field-error').textContent = 'Client secret is required.';
      return;
    }
    SB.busy(f, true);
    const r = await SB.api('POST', '/api/v1/integration/client-secret', { clientSecret: secret });
    SB.busy(f, false);
    if (!r.ok) { SB.showError(f, r); return; }
    f.reset();
    $('secret-dialog').close();
    SB.toast('Client secret updated');
    render(r.data);
  });

  function removeDialog(formId, path, done) {
    $(formId).addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = ev.target;
      SB.clearErrors(f);
      SB.busy(f, true);
      const v = SB.formValues(f);
      const r = await SB.api('POST', path, { deleteExtensions: !!v.deleteExtensions, deleteGroups: !!v.deleteGroups });
      SB.busy(f, false);
      if (!r.ok) { SB.showError(f, r); return; }
      f.closest('dialog').close();
      SB.toast(done);
      render(r.data);
    });
  }
  removeDialog('disable-form', '/api/v1/integration/disable', 'Integration disabled');
  removeDialog('disconnect-form', '/api/v1/integration/disconnect', 'Disconnected from Microsoft Entra ID');

  $('enable-btn').addEventListener('click', async (ev) => {
    const b = ev.currentTarget;
    b.disabled = true;
    const r = await SB.api('POST', '/api/v1/integration/enable');
    b.disabled = false;
    if (!r.ok) { SB.toast(SB.errorOf(r).message, true); return; }
    SB.toast('Integration enabled');
    render(r.data);
  });

  load();
})();
