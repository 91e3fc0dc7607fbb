// A certified OpenID provider (panva/oidc-provider) set up like a Microsoft
// Entra tenant for the relying party's interop test: issuer
// {base}/{tenant}/v2.0, ID tokens with tid, oid, preferred_username, email,
// ver 2.0 and the nonce; sign-in happens at once as the user named by
// login_hint (else the first user), consent is given for the client.
//
// Configuration comes from the environment: TENANT_ID, CLIENT_ID,
// CLIENT_SECRET, REDIRECT_URI and USERS (JSON [{login, oid, email, name}]).
// It listens on 127.0.0.1 (PORT, default any free port) and prints one JSON
// line {"issuer": ..., "port": ...} when ready.
import http from 'node:http';
import Provider from 'oidc-provider';

const env = (k) => {
  const v = process.env[k];
  if (!v) { console.error(`${k} is required`); process.exit(2); }
  return v;
};
const tenant = env('TENANT_ID').toLowerCase();
const users = JSON.parse(env('USERS'));
const prefix = `/${tenant}/v2.0`;

const server = http.createServer();
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}${prefix}`;
  const byLogin = (login) => users.find((u) => u.login.toLowerCase() === String(login || '').toLowerCase());

  const provider = new Provider(issuer, {
    clients: [{
      client_id: env('CLIENT_ID'),
      client_secret: env('CLIENT_SECRET'),
      redirect_uris: [env('REDIRECT_URI')],
      token_endpoint_auth_method: 'client_secret_post',
    }],
    claims: {
      openid: ['sub', 'tid', 'ver'],
      profile: ['oid', 'name', 'preferred_username'],
      email: ['email'],
    },
    // Entra puts the scope's claims into the ID token of the code flow.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `${prefix}/interaction/${interaction.uid}` },
    async findAccount(ctx, id) {
      const u = users.find((x) => x.oid === id);
      if (!u) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: u.oid, oid: u.oid, tid: tenant, ver: '2.0', name: u.name, preferred_username: u.login, email: u.email };
        },
      };
    },
  });
  provider.proxy = false;

  // Sign in and consent at once, as the simulated tenant does.
  provider.use(async (ctx, next) => {
    if (!ctx.path.startsWith('/interaction/')) return next();
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const user = byLogin(details.params.login_hint) || users[0];
    const grant = new provider.Grant({ accountId: user.oid, clientId: details.params.client_id });
    grant.addOIDCScope(String(details.params.scope));
    const grantId = await grant.save();
    await provider.interactionFinished(ctx.req, ctx.res,
      { login: { accountId: user.oid }, consent: { grantId } }, { mergeWithLastSubmission: false });
  });

  const handle = provider.callback();
  server.on('request', (req, res) => {
    if (!req.url.startsWith(prefix + '/')) { res.statusCode = 404; res.end(); return; }
    req.originalUrl = req.url;
    req.url = req.url.slice(prefix.length);
    handle(req, res);
  });
  process.stdout.write(JSON.stringify({ issuer, port }) + '\n');
});
