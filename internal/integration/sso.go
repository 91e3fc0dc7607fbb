package integration

import (
	"context"
)

// SSOApp returns what the client sign-in (package sso) needs to act as the
// PBX's Entra application: the connected tenant, the client ID and the
// client secret. It returns ErrNotConnected when the PBX is not connected
// and ErrDisabled when the integration is disabled (sign-in is refused then).
func (s *Service) SSOApp(ctx context.Context, pbxID string) (tenantID, clientID, clientSecret string, err error) {
	st, err := s.load(ctx, pbxID)
	if err != nil {
		return "", "", "", err
	}
	switch st.Status {
	case StatusNotConnected:
		return "", "", "", ErrNotConnected
	case StatusDisabled:
		return "", "", "", ErrDisabled
	}
	sec, err := s.Keys.OpenString(st.SealedSecret)
	if err != nil {
		return "", "", "", err
	}
	return st.TenantID, st.ClientID, sec, nil
}

// SSOTenant returns the connected tenant ID without opening the secret: the
// cheap check client sessions make on every request. Errors as SSOApp.
func (s *Service) SSOTenant(ctx context.Context, pbxID string) (string, error) {
	st, err := s.load(ctx, pbxID)
	if err != nil {
		return "", err
	}
	switch st.Status {
	case StatusNotConnected:
		return "", ErrNotConnected
	case StatusDisabled:
		return "", ErrDisabled
	}
	return st.TenantID, nil
}
