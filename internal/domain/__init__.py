"""Business domains; each package has the same five modules: model, repo, service, handler, errors."""
