"""Services: what the front ends call. They take Pydantic inputs, return Pydantic read models and
raise only vpn_manager.errors."""
