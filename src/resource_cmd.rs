//! `hadr resource restart|disable|enable NAME --node ADMIN` and `hadr
//! resource list --node ADMIN…` (docs/resources.md §Status and control).

use anyhow::{Context, Result};
use clap::Subcommand;

/// What to do to a resource.
#[derive(Subcommand)]
pub enum ResourceCmd {
    /// Each node's resources, like TSA's `lssam`: state, failures, the last
    /// line of output.
    List {
        /// Admin address of each node.
        #[arg(long, required = true)]
        node: Vec<String>,
    },
    /// Forget its failures; if it runs, stop it (and those after it) and
    /// start again; a stop that could not be confirmed is tried again.
    Restart {
        /// The resource's name.
        name: String,
        /// Admin address of the node.
        #[arg(long, default_value = "127.0.0.1:8433")]
        node: String,
    },
    /// Stop it and every resource after it, and keep them stopped.
    Disable {
        /// The resource's name.
        name: String,
        /// Admin address of the node.
        #[arg(long, default_value = "127.0.0.1:8433")]
        node: String,
    },
    /// Undo `disable`.
    Enable {
        /// The resource's name.
        name: String,
        /// Admin address of the node.
        #[arg(long, default_value = "127.0.0.1:8433")]
        node: String,
    },
}

pub async fn run(admin: &crate::admin_access::Admin, what: ResourceCmd) -> Result<()> {
    let (name, node, op) = match what {
        ResourceCmd::List { node } => {
            for n in &node {
                match admin.client(n.clone())?.status().await {
                    Ok(st) => {
                        println!("{n} ({})", st.role);
                        print!("{}", crate::status_text::resources_table(&st));
                    }
                    Err(e) => println!("{n}: unreachable: {e}"),
                }
            }
            return Ok(());
        }
        ResourceCmd::Restart { name, node } => (name, node, "restart"),
        ResourceCmd::Disable { name, node } => (name, node, "disable"),
        ResourceCmd::Enable { name, node } => (name, node, "enable"),
    };
    admin
        .client(node.clone())?
        .resource(&name, op)
        .await
        .with_context(|| format!("{node}: {op} {name}"))?;
    println!("{node}: {op} {name}: asked");
    Ok(())
}
