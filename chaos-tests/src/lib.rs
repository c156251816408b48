//! Placeholder until the chaos issue (#5): the harness will start real `kizuna` processes.
