from .account import serve

serve()
