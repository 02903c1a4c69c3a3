# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_ocusers_global_optspecs
    string join \n v/verbose h/help V/version
end

function __fish_ocusers_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_ocusers_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_ocusers_using_subcommand
    set -l cmd (__fish_ocusers_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c ocusers -n "__fish_ocusers_needs_command" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ocusers -n "__fish_ocusers_needs_command" -s V -l version -d 'Print version'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "add" -d 'Create a tenant and start its gateway: user, state, config, token, port block, unit'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "remove" -d 'Stop a tenant\'s gateway and remove the tenant (state archived unless --purge)'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "list" -d 'One line per tenant: state, readiness, port, tier, memory, uptime'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "status" -d 'Details of one tenant or all, read from systemd and the gateway'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "start" -d 'Start tenants\' gateways and wait until they are ready (like `systemctl start openclaw@NAME`)'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "stop" -d 'Stop tenants\' gateways (like `systemctl stop openclaw@NAME`)'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "restart" -d 'Restart tenants\' gateways and wait until they are ready'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "apply" -d 'Converge the host to a TOML file of tenants (add, update limits live, --prune removes)'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "export" -d 'Print this host\'s tenants as a file `ocusers apply` takes (no secret values)'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "metrics" -d 'Prometheus metrics of every tenant and the host\'s committed memory'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "runtime" -d 'Install and list OpenClaw runtimes (Node + the openclaw package)'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "proxy" -d 'Public access through the reverse proxy (Caddy or nginx): sync and show its routes'
complete -c ocusers -n "__fish_ocusers_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ocusers -n "__fish_ocusers_using_subcommand add" -l tier -d 'Resource tier (light, standard, heavy, or one of /etc/ocusers/tiers)' -r
complete -c ocusers -n "__fish_ocusers_using_subcommand add" -l port -d 'Gateway port (first of the tenant\'s block); allocated from the pool if left out' -r
complete -c ocusers -n "__fish_ocusers_using_subcommand add" -l domain -d 'An extra public host name for the tenant besides NAME.DOMAIN (repeat for more); its DNS must point at this host' -r
complete -c ocusers -n "__fish_ocusers_using_subcommand add" -l no-start -d 'Create and enable the tenant but do not start its gateway'
complete -c ocusers -n "__fish_ocusers_using_subcommand add" -l no-wait -d 'Start the gateway but do not wait until it answers /readyz'
complete -c ocusers -n "__fish_ocusers_using_subcommand add" -l force -d 'Add even when the tenants\' memory limits would exceed the capacity guard'
complete -c ocusers -n "__fish_ocusers_using_subcommand add" -l dry-run -d 'Print the plan and change nothing'
complete -c ocusers -n "__fish_ocusers_using_subcommand add" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand add" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand remove" -l purge -d 'Delete the tenant\'s state instead of archiving it'
complete -c ocusers -n "__fish_ocusers_using_subcommand remove" -l dry-run -d 'Print the plan and change nothing'
complete -c ocusers -n "__fish_ocusers_using_subcommand remove" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand remove" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand list" -l json -d 'Print JSON (shape documented in README.md, "Output")'
complete -c ocusers -n "__fish_ocusers_using_subcommand list" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand list" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand status" -l json -d 'Print JSON (shape documented in README.md, "Output")'
complete -c ocusers -n "__fish_ocusers_using_subcommand status" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand status" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand start" -l all -d 'Every tenant'
complete -c ocusers -n "__fish_ocusers_using_subcommand start" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand start" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand stop" -l all -d 'Every tenant'
complete -c ocusers -n "__fish_ocusers_using_subcommand stop" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand stop" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand restart" -l all -d 'Every tenant'
complete -c ocusers -n "__fish_ocusers_using_subcommand restart" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand restart" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand apply" -l prune -d 'Remove tenants that are on this host but not in FILE (state archived)'
complete -c ocusers -n "__fish_ocusers_using_subcommand apply" -l dry-run -d 'Print the plan and change nothing'
complete -c ocusers -n "__fish_ocusers_using_subcommand apply" -l no-start -d 'Create new tenants without starting their gateways, and start or restart no gateway'
complete -c ocusers -n "__fish_ocusers_using_subcommand apply" -l no-wait -d 'Start gateways but do not wait until they answer /readyz'
complete -c ocusers -n "__fish_ocusers_using_subcommand apply" -l force -d 'Apply even when the tenants\' memory limits would exceed the capacity guard'
complete -c ocusers -n "__fish_ocusers_using_subcommand apply" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand apply" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand export" -l json -d 'Print JSON (shape documented in README.md, "Output")'
complete -c ocusers -n "__fish_ocusers_using_subcommand export" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand export" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand metrics" -l textfile -d 'Write the metrics atomically to this file (for node_exporter\'s textfile collector, e.g. /var/lib/prometheus/node-exporter/ocusers.prom) instead of stdout' -r -F
complete -c ocusers -n "__fish_ocusers_using_subcommand metrics" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand metrics" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and not __fish_seen_subcommand_from install list help" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and not __fish_seen_subcommand_from install list help" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and not __fish_seen_subcommand_from install list help" -f -a "install" -d 'Install Node and OpenClaw from the npm registry into a shared, read-only prefix and make it the default for new tenants'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and not __fish_seen_subcommand_from install list help" -f -a "list" -d 'Installed runtimes, the default, and which tenants use each'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and not __fish_seen_subcommand_from install list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from install" -l version -d 'OpenClaw version (default: the registry\'s latest)' -r
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from install" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from list" -l json -d 'Print JSON (shape documented in README.md, "Output")'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from help" -f -a "install" -d 'Install Node and OpenClaw from the npm registry into a shared, read-only prefix and make it the default for new tenants'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from help" -f -a "list" -d 'Installed runtimes, the default, and which tenants use each'
complete -c ocusers -n "__fish_ocusers_using_subcommand runtime; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ocusers -n "__fish_ocusers_using_subcommand proxy; and not __fish_seen_subcommand_from sync show help" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand proxy; and not __fish_seen_subcommand_from sync show help" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand proxy; and not __fish_seen_subcommand_from sync show help" -f -a "sync" -d 'Rewrite ocusers\' proxy include and every tenant\'s route from the registry, check the proxy\'s config and reload it if it changed'
complete -c ocusers -n "__fish_ocusers_using_subcommand proxy; and not __fish_seen_subcommand_from sync show help" -f -a "show" -d 'Print the include ocusers would write and the routes of every host name'
complete -c ocusers -n "__fish_ocusers_using_subcommand proxy; and not __fish_seen_subcommand_from sync show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ocusers -n "__fish_ocusers_using_subcommand proxy; and __fish_seen_subcommand_from sync" -l dry-run -d 'Print the plan and change nothing'
complete -c ocusers -n "__fish_ocusers_using_subcommand proxy; and __fish_seen_subcommand_from sync" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand proxy; and __fish_seen_subcommand_from sync" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand proxy; and __fish_seen_subcommand_from show" -l json -d 'Print JSON (shape documented in README.md, "Output")'
complete -c ocusers -n "__fish_ocusers_using_subcommand proxy; and __fish_seen_subcommand_from show" -s v -l verbose -d 'More log output on stderr (repeat for more)'
complete -c ocusers -n "__fish_ocusers_using_subcommand proxy; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c ocusers -n "__fish_ocusers_using_subcommand proxy; and __fish_seen_subcommand_from help" -f -a "sync" -d 'Rewrite ocusers\' proxy include and every tenant\'s route from the registry, check the proxy\'s config and reload it if it changed'
complete -c ocusers -n "__fish_ocusers_using_subcommand proxy; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print the include ocusers would write and the routes of every host name'
complete -c ocusers -n "__fish_ocusers_using_subcommand proxy; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart apply export metrics runtime proxy help" -f -a "add" -d 'Create a tenant and start its gateway: user, state, config, token, port block, unit'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart apply export metrics runtime proxy help" -f -a "remove" -d 'Stop a tenant\'s gateway and remove the tenant (state archived unless --purge)'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart apply export metrics runtime proxy help" -f -a "list" -d 'One line per tenant: state, readiness, port, tier, memory, uptime'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart apply export metrics runtime proxy help" -f -a "status" -d 'Details of one tenant or all, read from systemd and the gateway'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart apply export metrics runtime proxy help" -f -a "start" -d 'Start tenants\' gateways and wait until they are ready (like `systemctl start openclaw@NAME`)'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart apply export metrics runtime proxy help" -f -a "stop" -d 'Stop tenants\' gateways (like `systemctl stop openclaw@NAME`)'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart apply export metrics runtime proxy help" -f -a "restart" -d 'Restart tenants\' gateways and wait until they are ready'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart apply export metrics runtime proxy help" -f -a "apply" -d 'Converge the host to a TOML file of tenants (add, update limits live, --prune removes)'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart apply export metrics runtime proxy help" -f -a "export" -d 'Print this host\'s tenants as a file `ocusers apply` takes (no secret values)'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart apply export metrics runtime proxy help" -f -a "metrics" -d 'Prometheus metrics of every tenant and the host\'s committed memory'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart apply export metrics runtime proxy help" -f -a "runtime" -d 'Install and list OpenClaw runtimes (Node + the openclaw package)'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart apply export metrics runtime proxy help" -f -a "proxy" -d 'Public access through the reverse proxy (Caddy or nginx): sync and show its routes'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and not __fish_seen_subcommand_from add remove list status start stop restart apply export metrics runtime proxy help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and __fish_seen_subcommand_from runtime" -f -a "install" -d 'Install Node and OpenClaw from the npm registry into a shared, read-only prefix and make it the default for new tenants'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and __fish_seen_subcommand_from runtime" -f -a "list" -d 'Installed runtimes, the default, and which tenants use each'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and __fish_seen_subcommand_from proxy" -f -a "sync" -d 'Rewrite ocusers\' proxy include and every tenant\'s route from the registry, check the proxy\'s config and reload it if it changed'
complete -c ocusers -n "__fish_ocusers_using_subcommand help; and __fish_seen_subcommand_from proxy" -f -a "show" -d 'Print the include ocusers would write and the routes of every host name'
