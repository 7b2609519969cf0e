package cli

import (
	"fmt"
	"net/url"
	"time"

	apiv1 "github.com/clover-sched/clover/api"

	"github.com/spf13/cobra"

	"github.com/clover-sched/clover/internal/store"
)

func newContactCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "contact",
		Short: "Manage the contacts alerts are sent to: add, list, delete",
		Long: "Contacts are the people the monitor tells of a problem: a job names its owners' contacts, and the\n" +
			"monitor's operators are told of server and cluster problems. Any server takes these commands, even\n" +
			"while no leader is elected.",
	}
	addAPIFlags(cmd)

	add := &cobra.Command{
		Use:     "add NAME --email ADDRESS [--webhook URL]",
		Short:   "Add a contact",
		Example: "  clover contact add ops --email ops@example.com\n  clover contact add payments --email payments@example.com --webhook https://hooks.example.com/T0/B0/XX",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			email, _ := cmd.Flags().GetString("email")
			webhook, _ := cmd.Flags().GetString("webhook")
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out store.Contact
			body := apiv1.ContactRequest{Name: args[0], Email: email, Webhook: webhook}
			if err := api.do(cmd.Context(), "POST", "/api/v1/contacts", body, &out); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added %s <%s>\n", out.Name, out.Email)
			return nil
		},
	}
	add.Flags().String("email", "", "email address (required)")
	add.Flags().String("webhook", "", "http(s) URL that also receives the alerts as JSON")
	_ = add.MarkFlagRequired("email")
	cmd.AddCommand(add)

	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List contacts", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var contacts []store.Contact
			if err := api.do(cmd.Context(), "GET", "/api/v1/contacts", nil, &contacts); err != nil {
				return err
			}
			if wantJSON(cmd) {
				if contacts == nil {
					contacts = []store.Contact{}
				}
				return printJSON(cmd.OutOrStdout(), contacts)
			}
			w := table(cmd.OutOrStdout())
			fmt.Fprintln(w, "NAME\tEMAIL\tWEBHOOK\tCREATED")
			for _, c := range contacts {
				hook := "-"
				if c.Webhook != "" {
					hook = redactWebhook(c.Webhook)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", c.Name, c.Email, hook, c.CreatedAt.Local().Format(time.RFC3339))
			}
			return w.Flush()
		},
	})

	cmd.AddCommand(&cobra.Command{
		Use: "delete NAME", Short: "Delete a contact", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			if err := api.do(cmd.Context(), "DELETE", "/api/v1/contacts/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", args[0])
			return nil
		},
	})
	return cmd
}

// redactWebhook shows where a webhook goes without its path and query, where services put the token;
// -o json shows it whole.
func redactWebhook(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return u
	}
	if p.Path == "" || p.Path == "/" {
		return p.Scheme + "://" + p.Host + p.Path
	}
	return p.Scheme + "://" + p.Host + "/..."
}
