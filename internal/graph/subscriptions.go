package graph

import (
	"context"
	"iter"
	"net/http"
	"time"
)

// CreateSubscription creates a change-notification subscription (Graph validates the
// notification URL before answering 201). A duplicate answers 409 (ErrConflict).
func (c *Client) CreateSubscription(ctx context.Context, s Subscription) (Subscription, error) {
	var out Subscription
	err := c.Do(ctx, http.MethodPost, "/subscriptions", nil, s, &out)
	return out, err
}

// RenewSubscription moves a subscription's expiry (this also reauthorizes it).
func (c *Client) RenewSubscription(ctx context.Context, id string, expiry time.Time) (Subscription, error) {
	var out Subscription
	body := map[string]string{"expirationDateTime": expiry.UTC().Format(time.RFC3339Nano)}
	err := c.Do(ctx, http.MethodPatch, "/subscriptions/"+pathEscape(id), nil, body, &out)
	return out, err
}

// ReauthorizeSubscription answers a reauthorizationRequired lifecycle event without
// changing the expiry.
func (c *Client) ReauthorizeSubscription(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodPost, "/subscriptions/"+pathEscape(id)+"/reauthorize", nil, struct{}{}, nil)
}

// DeleteSubscription stops a subscription.
func (c *Client) DeleteSubscription(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/subscriptions/"+pathEscape(id), nil, nil, nil)
}

// ListSubscriptions iterates the application's subscriptions in this tenant (Graph
// allows only 25 such calls per 20 s per tenant).
func (c *Client) ListSubscriptions(ctx context.Context) iter.Seq2[Subscription, error] {
	return List[Subscription](ctx, c, "/subscriptions", ListOptions{})
}
