package app

import "context"

// openRegistrar connects the SIP registrar when --kamailio-db is set.
func (a *App) openRegistrar(ctx context.Context) error {
	return nil
}
