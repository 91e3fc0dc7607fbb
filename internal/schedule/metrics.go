package schedule

import "github.com/prometheus/client_golang/prometheus"

var (
	descWebhook = prometheus.NewDesc("switchboard_webhook_notifications_total",
		"Graph notifications received at the webhook, by result (accepted, rejected, malformed, validation; unqueued: collections answered 503 because their work could not be queued).", []string{"result"}, nil)
	descTriggers = prometheus.NewDesc("switchboard_schedule_triggers_total",
		"Syncs asked of the sync engine by the scheduler, the webhook and polling.", nil, nil)
)

// Describe implements prometheus.Collector (register the Service itself).
func (s *Service) Describe(ch chan<- *prometheus.Desc) {
	ch <- descWebhook
	ch <- descTriggers
}

// Collect implements prometheus.Collector.
func (s *Service) Collect(ch chan<- prometheus.Metric) {
	st := s.Stats()
	ch <- prometheus.MustNewConstMetric(descWebhook, prometheus.CounterValue, float64(st.Accepted), "accepted")
	ch <- prometheus.MustNewConstMetric(descWebhook, prometheus.CounterValue, float64(st.Rejected), "rejected")
	ch <- prometheus.MustNewConstMetric(descWebhook, prometheus.CounterValue, float64(st.Malformed), "malformed")
	ch <- prometheus.MustNewConstMetric(descWebhook, prometheus.CounterValue, float64(st.Validations), "validation")
	ch <- prometheus.MustNewConstMetric(descWebhook, prometheus.CounterValue, float64(st.Unqueued), "unqueued")
	ch <- prometheus.MustNewConstMetric(descTriggers, prometheus.CounterValue, float64(st.Triggers))
}

var _ prometheus.Collector = (*Service)(nil)
