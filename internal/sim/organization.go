package sim

import "net/http"

func (t *Tenant) organizationRoutes() {
	p := perm{app: []string{"Organization.Read.All", "Organization.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"},
		del: []string{"User.Read", "Organization.Read.All", "Directory.Read.All"}}
	t.route("GET /v1.0/organization", p, t.organization)
}

// organization answers GET /organization: the tenant itself.
func (t *Tenant) organization(w http.ResponseWriter, r *http.Request) {
	org := obj{
		{"id", t.cfg.TenantID}, {"deletedDateTime", nil}, {"businessPhones", []string{"+1 425 555 0100"}},
		{"city", "Redmond"}, {"country", nil}, {"countryLetterCode", "US"}, {"createdDateTime", "2019-01-07T08:00:00Z"},
		{"displayName", "Contoso"}, {"preferredLanguage", "en"}, {"tenantType", "AAD"},
		{"verifiedDomains", []any{
			obj{{"capabilities", "Email, OfficeCommunicationsOnline"}, {"isDefault", true}, {"isInitial", false}, {"name", t.cfg.Domain}, {"type", "Managed"}},
			obj{{"capabilities", "Email, OfficeCommunicationsOnline"}, {"isDefault", false}, {"isInitial", true}, {"name", t.cfg.tenantDomain()}, {"type", "Managed"}},
		}},
	}
	writeJSON(w, http.StatusOK, obj{{"@odata.context", t.baseURL(r) + "/v1.0/$metadata#organization"}, {"value", []any{org}}})
}
