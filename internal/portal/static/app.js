// Switchboard portal: shared behaviour for every page (no inline script;
// the Content-Security-Policy allows only files served from /static/).
// Pages read from the server-rendered HTML; changes go to the admin JSON
// API with the session cookie.
(function () {
  'use strict';

  const SB = (window.SB = {});

  // api calls the admin JSON API. It resolves to {ok, status, data}; a lost
  // session sends the browser to the login page.
  SB.api = async function (method, path, body) {
    const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      return { ok: false, status: 0, data: { error: { code: 'network', message: 'The service cannot be reached. Check your connection and try again.' } } };
    }
    if (res.status === 401) {
      window.location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search));
      return { ok: false, status: 401, data: {} };
    }
    let data = {};
    const text = await res.text();
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = { error: { code: 'bad_answer', message: text.slice(0, 200) } }; }
    }
    return { ok: res.ok, status: res.status, data };
  };

  SB.errorOf = function (r) {
    const e = (r.data && r.data.error) || {};
    return { code: e.code || 'error', message: e.message || 'The request failed (' + r.status + ').', field: e.field || '' };
  };

  // clearErrors and showError put the API's error next to the field it names
  // (error.field), or at the form's .form-error when it names none.
  SB.clearErrors = function (form) {
    form.querySelectorAll('.field-error').forEach((p) => { p.textContent = ''; });
    form.querySelectorAll('[aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
    const fe = form.querySelector('.form-error');
    if (fe) fe.textContent = '';
  };

  SB.showError = function (form, r) {
    const e = SB.errorOf(r);
    let slot = null;
    // "days[0]" or "groupIds[3]": the slot is the list's.
    if (e.field) e.field = e.field.replace(/\[\d+\]$/, '');
    if (e.field) {
      slot = form.querySelector('.field-error[data-for="' + CSS.escape(e.field) + '"]');
      const input = form.querySelector('[name="' + CSS.escape(e.field) + '"]');
      if (input) {
        input.setAttribute('aria-invalid', 'true');
        input.focus();
      }
    }
    if (!slot) slot = form.querySelector('.form-error');
    if (slot) slot.textContent = e.message;
    else SB.toast(e.message, true);
  };

  SB.toast = function (msg, bad) {
    const t = document.getElementById('toast');
    if (!t) return;
    t.textContent = msg;
    t.classList.toggle('toast-bad', !!bad);
    t.classList.add('show');
    clearTimeout(SB._toastTimer);
    SB._toastTimer = setTimeout(() => t.classList.remove('show'), 4000);
  };

  // confirm asks in the shared confirm dialog; resolves true on Confirm.
  SB.confirm = function (text, okLabel) {
    const d = document.getElementById('confirm-dialog');
    if (!d) return Promise.resolve(window.confirm(text));
    d.querySelector('#confirm-text').textContent = text;
    d.querySelector('#confirm-ok').textContent = okLabel || 'Confirm';
    d.returnValue = '';
    return new Promise((resolve) => {
      d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
      d.showModal();
    });
  };

  // busy disables a form's buttons while a request runs.
  SB.busy = function (form, on) {
    form.querySelectorAll('button').forEach((b) => { b.disabled = on; });
    form.setAttribute('aria-busy', on ? 'true' : 'false');
  };

  // formValues reads named inputs: checkboxes as booleans, the rest trimmed.
  SB.formValues = function (form) {
    const out = {};
    form.querySelectorAll('input[name], select[name], textarea[name]').forEach((el) => {
      if (el.disabled) return;
      if (el.type === 'checkbox') out[el.name] = el.checked;
      else out[el.name] = el.value.trim();
    });
    return out;
  };

  // refresh reloads the page's htmx results region, or the whole page.
  SB.refresh = function () {
    const region = document.querySelector('.results[id]');
    if (region && window.htmx) {
      return window.htmx.ajax('GET', location.pathname + location.search, { target: '#' + region.id, swap: 'outerHTML' });
    }
    location.reload();
    return Promise.resolve();
  };

  function camel(s) { return s.replace(/-([a-z])/g, (_, c) => c.toUpperCase()); }

  document.addEventListener('click', async (ev) => {
    const el = ev.target.closest('button, a');
    if (!el) return;

    if (el.dataset.openDialog) {
      const d = document.getElementById(el.dataset.openDialog);
      const f = d && d.querySelector('form');
      if (f) { f.reset(); SB.clearErrors(f); }
      if (d) d.showModal();
      return;
    }
    if (el.hasAttribute('data-close-dialog')) {
      const d = el.closest('dialog');
      if (d) d.close();
      return;
    }
    if (el.dataset.copy) {
      const src = document.getElementById(el.dataset.copy);
      if (!src) return;
      const label = el.textContent;
      try {
        await navigator.clipboard.writeText(src.value);
      } catch (e) {
        src.select();
        document.execCommand('copy');
      }
      el.textContent = 'Copied';
      SB.toast('Copied to the clipboard');
      setTimeout(() => { el.textContent = label; }, 1500);
      return;
    }
    // A form dialog: data-form-dialog=<dialog id>, data-method, data-path,
    // data-title and data-value-<field> to prefill.
    if (el.dataset.formDialog) {
      const d = document.getElementById(el.dataset.formDialog);
      const f = d.querySelector('form');
      f.reset();
      SB.clearErrors(f);
      f.dataset.method = el.dataset.method;
      f.dataset.path = el.dataset.path;
      const t = d.querySelector('[data-dialog-title]');
      if (t && el.dataset.title) t.textContent = el.dataset.title;
      for (const [k, v] of Object.entries(el.dataset)) {
        if (!k.startsWith('value')) continue;
        const name = k.charAt(5).toLowerCase() + k.slice(6);
        const input = f.querySelector('[name="' + CSS.escape(camel(name)) + '"]');
        if (input) input.value = v;
      }
      d.showModal();
      return;
    }
    if (el.dataset.apiDelete) {
      if (!(await SB.confirm(el.dataset.confirm || 'Delete this?', 'Delete'))) return;
      el.disabled = true;
      const r = await SB.api('DELETE', el.dataset.apiDelete);
      el.disabled = false;
      if (r.ok) {
        SB.toast('Deleted');
        SB.refresh();
      } else {
        SB.toast(SB.errorOf(r).message, true);
      }
    }
  });

  // resolveNumbers turns "1001, 1002" into extension ids. A number found by
  // search is the smallest number containing those digits, so the exact
  // match is among the first results.
  SB.resolveNumbers = async function (text) {
    const ids = [];
    for (const n of [...new Set(text.split(/[\s,;]+/).filter(Boolean))]) {
      const r = await SB.api('GET', '/api/v1/extensions?limit=50&search=' + encodeURIComponent(n));
      if (!r.ok) return { error: SB.errorOf(r).message };
      const hit = (r.data.items || []).find((x) => x.number === n);
      if (!hit) return { error: 'No extension has the number ' + n + '.' };
      ids.push(hit.id);
    }
    return { ids };
  };

  // picker makes a directory picker of box: a search field, a list of
  // checkboxes paged by the API's nextCursor ("Load more"), and a selection
  // kept across searches and pages. decorate(item, li, picker) may add to a row.
  // data-picker-local on box: the API lists everything in one answer and
  // the search filters it here. A [data-picker-all] button selects every item.
  // p.labels maps ids to names; p.onUpdate() runs whenever the selection changes.
  SB.picker = function (box, url, decorate) {
    const p = { box, selected: new Set(), cursor: '', search: '', loadedOnce: false, labels: new Map() };
    const list = box.querySelector('[data-picker-list]');
    const more = box.querySelector('[data-picker-more]');
    const input = box.querySelector('input[type=search]');
    const count = box.querySelector('[data-picker-count]');
    const local = box.hasAttribute('data-picker-local');
    p.updateCount = () => { count.textContent = p.selected.size + ' selected'; if (p.onUpdate) p.onUpdate(); };
    p.select = (ids) => { p.selected = new Set(ids || []); p.updateCount(); list.querySelectorAll('input[type=checkbox]').forEach((cb) => { cb.checked = p.selected.has(cb.value); }); };
    let loads = 0; // the newest load wins; the list is busy until it lands
    p.load = async (append) => {
      p.loadedOnce = true;
      const mine = ++loads;
      const q = new URLSearchParams();
      if (p.search) q.set('search', p.search);
      if (append && p.cursor) q.set('cursor', p.cursor);
      more.disabled = true;
      box.setAttribute('aria-busy', 'true');
      const r = await SB.api('GET', url + '?' + q.toString());
      if (mine !== loads) return;
      more.disabled = false;
      box.removeAttribute('aria-busy');
      if (!r.ok) { count.textContent = SB.errorOf(r).message; return; }
      if (!append) list.replaceChildren();
      let items = r.data.items || [];
      const text = (it) => [it.displayName, it.name, it.userPrincipalName, it.mail, it.email, it.number].filter(Boolean).join(' ').toLowerCase();
      if (local && p.search) items = items.filter((it) => text(it).includes(p.search.toLowerCase()));
      if (!items.length && !append) {
        const li = document.createElement('li');
        li.className = 'muted';
        li.textContent = p.search ? 'Nothing matches “' + p.search + '”.' : 'Nothing to choose from.';
        list.append(li);
      }
      for (const it of items) {
        p.labels.set(it.id, it.displayName || it.name || it.id);
        const li = document.createElement('li');
        const label = document.createElement('label');
        label.className = 'check';
        const cb = document.createElement('input');
        cb.type = 'checkbox';
        cb.value = it.id;
        cb.checked = p.selected.has(it.id);
        cb.addEventListener('change', () => { if (cb.checked) p.selected.add(it.id); else p.selected.delete(it.id); p.updateCount(); });
        const span = document.createElement('span');
        span.textContent = it.displayName || it.name || it.id;
        const small = document.createElement('small');
        const ext = it.extensionNumber || it.number;
        small.textContent = [it.userPrincipalName || it.mail || it.email, it.userType || it.type, ext ? 'extension ' + ext : ''].filter(Boolean).join(' · ');
        span.append(small);
        label.append(cb, span);
        li.append(label);
        if (decorate) decorate(it, li, p);
        list.append(li);
      }
      p.cursor = r.data.nextCursor || '';
      more.hidden = !p.cursor;
      p.updateCount();
    };
    const search = () => { p.search = input.value.trim(); p.load(false); };
    box.querySelector('[data-picker-search]').addEventListener('click', search);
    input.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') { ev.preventDefault(); search(); } });
    more.addEventListener('click', () => p.load(true));
    const all = box.querySelector('[data-picker-all]');
    if (all) {
      all.addEventListener('click', async () => {
        all.disabled = true;
        let cursor = '';
        do {
          const r = await SB.api('GET', url + (cursor ? '?cursor=' + encodeURIComponent(cursor) : ''));
          if (!r.ok) { all.disabled = false; count.textContent = SB.errorOf(r).message; return; }
          for (const it of r.data.items || []) p.selected.add(it.id);
          cursor = r.data.nextCursor || '';
        } while (cursor);
        all.disabled = false;
        p.select([...p.selected]);
      });
    }
    return p;
  };

  // Forms marked data-json-form send their fields as JSON to data-path with
  // data-method, then refresh the page.
  document.addEventListener('submit', async (ev) => {
    const f = ev.target;
    if (!f.matches('form[data-json-form]')) return;
    ev.preventDefault();
    SB.clearErrors(f);
    SB.busy(f, true);
    const body = SB.formValues(f);
    for (const el of f.querySelectorAll('[data-extension-numbers]')) {
      const res = await SB.resolveNumbers(el.value);
      if (res.error) {
        SB.busy(f, false);
        SB.showError(f, { status: 400, data: { error: { message: res.error, field: el.name } } });
        return;
      }
      body[el.name] = res.ids;
    }
    const r = await SB.api(f.dataset.method || 'POST', f.dataset.path, body);
    SB.busy(f, false);
    if (!r.ok) {
      SB.showError(f, r);
      return;
    }
    const d = f.closest('dialog');
    if (d) d.close();
    SB.toast('Saved');
    SB.refresh();
  });
})();
