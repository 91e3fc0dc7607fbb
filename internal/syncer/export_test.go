package syncer

// ExtractNumber exposes the digits rule to tests ("" when unusable).
func ExtractNumber(raw string) string {
	n, why := extractNumber(raw)
	if why != "" {
		return ""
	}
	return n
}
